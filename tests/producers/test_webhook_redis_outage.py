"""Fault spec: while Redis is down the receiver answers 503 + Retry-After, and loses nothing."""

from __future__ import annotations

import inspect
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from lytics_samples import TOKEN, batch, queued_events
from pydantic import SecretStr
from starlette.testclient import TestClient

from core import dispatch
from core.jobs import ExportJob, JobsFile
from core.settings import Settings
from producers.webhook import create_app
from worker.celery_app import create_app as create_celery_app

URL = "/webhooks/lytics/vip"
# Without ignore_result=True, send_task subscribes to each task's result; with Redis down,
# Celery's result consumer then retries 20 x 1 s and raises RuntimeError (a 500, not a 503).
RESULTS_SUBSCRIBED = "ignore_result" not in inspect.getsource(dispatch.send_events)
AUTH = {"Authorization": TOKEN}


@pytest.fixture
def own_redis(redis_server: Any, tmp_path: Path) -> Iterator[Any]:
    """A Redis of this test's own, with an fsync'ed append-only file so a restart keeps data."""
    server = type(redis_server)(tmp_path, appendonly=True).start()
    yield server
    server.stop()


class Poster(threading.Thread):
    """Posts distinct 20-event bodies until stopped, remembering every answer."""

    def __init__(self, client: TestClient) -> None:
        super().__init__(daemon=True)
        self.client, self.stopping = client, threading.Event()
        self.answers: list[tuple[int, str | None, list[str]]] = []

    def run(self) -> None:
        sent = 0
        while not self.stopping.is_set():
            payload = batch(20, start=sent)
            answer = self.client.post(URL, json=payload, headers=AUTH)
            emails = [b["data"]["email"] for b in payload]
            self.answers.append((answer.status_code, answer.headers.get("retry-after"), emails))
            sent += 20

    def statuses(self) -> list[int]:
        return [status for status, _retry, _emails in self.answers]


@pytest.mark.faults
@pytest.mark.xfail(RESULTS_SUBSCRIBED, strict=False,
                   reason="core/dispatch.py: send_task needs ignore_result=True")
def test_outage_is_503_then_recovery_with_every_accepted_event_queued(own_redis: Any,
                                                                      job: ExportJob) -> None:
    """Stop Redis under load: 503 + Retry-After meanwhile, 202 after restart, none lost."""
    # given: a receiver posting continuously against our own Redis
    settings = Settings(redis_url=own_redis.url, key_prefix=f"t{uuid.uuid4().hex[:8]}",
                        webhook_token=SecretStr(TOKEN))
    celery = create_celery_app(settings)
    app = create_app(settings, JobsFile(jobs=(job,)), celery, redis.Redis.from_url(own_redis.url))
    poster = Poster(TestClient(app, raise_server_exceptions=False))
    poster.start()
    try:
        _wait_for(lambda: 202 in poster.statuses(), "first 202")
        # when: Redis stops, then comes back on the same port
        own_redis.stop()
        down_from = len(poster.answers)
        _wait_for(lambda: poster.statuses()[down_from:].count(503) >= 3, "503s while down")
        own_redis.start()
        up_from = len(poster.answers)
        _wait_for(lambda: poster.statuses()[up_from:].count(202) >= 3, "202s after restart")
    finally:
        poster.stopping.set()
        poster.join(timeout=30)
        celery.close()
    # then: only 202/503, every 503 says when to retry, every accepted event is queued
    assert set(poster.statuses()) <= {202, 503}
    assert all(retry and int(retry) > 0 for status, retry, _e in poster.answers if status == 503)
    accepted = {email for status, _r, emails in poster.answers if status == 202 for email in emails}
    client = redis.Redis.from_url(own_redis.url, decode_responses=True)
    queued = {event["profile"]["email"] for event in queued_events(client, settings.key_prefix)}
    assert accepted <= queued
    assert len(accepted) >= 20 * 4


def _wait_for(predicate: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
