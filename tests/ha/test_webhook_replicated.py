"""What the webhook's 202 promises with Sentinel: the events are on a replica as well.

A replica that stops acknowledging (here: stopped with SIGSTOP) turns the answer into 503
with ``Retry-After``, so Lytics sends the body again; once it acknowledges again, 202.
"""

from __future__ import annotations

import os
import signal
import warnings
from collections.abc import Iterator

import pytest
from pydantic import SecretStr
from starlette.exceptions import StarletteDeprecationWarning

from core import redisconn
from core.jobs import ExportJob, JobsFile
from core.settings import Settings
from producers.webhook import create_app
from tests.ha.conftest import SentinelCluster
from worker.celery_app import create_app as create_celery_app

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

TOKEN = "ha-token-0123456789"
JOB = ExportJob(id="vip", audiences=("vip_buyers",))
BODY = {"data": {"email": "ann@example.com", "segment_events": [
    {"event": "enter", "slug": "vip_buyers", "enter": "2026-11-28T12:00:00Z"}]}}


@pytest.fixture
def receiver(cluster: SentinelCluster) -> Iterator[TestClient]:
    settings = Settings(redis_url=cluster.url, key_prefix="hawh", webhook_token=SecretStr(TOKEN),
                        redis_wait_timeout_ms=300)
    celery = create_celery_app(settings)
    app = create_app(settings, JobsFile(jobs=(JOB,)), celery,
                     redisconn.client(settings, socket_timeout=5))
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        yield client
    celery.close()


def test_a_202_waits_for_a_replica_and_503_asks_lytics_to_retry(
        cluster: SentinelCluster, receiver: TestClient) -> None:
    assert receiver.post("/webhooks/lytics/vip", json=BODY).status_code == 202

    os.kill(cluster.replica.proc.pid, signal.SIGSTOP)
    try:
        refused = receiver.post("/webhooks/lytics/vip", json=BODY)
    finally:
        os.kill(cluster.replica.proc.pid, signal.SIGCONT)
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "5"
    assert "0 of 1 replica" in refused.json()["error"]

    assert receiver.post("/webhooks/lytics/vip", json=BODY).status_code == 202
