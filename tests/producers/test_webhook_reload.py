"""Specs for a receiver built from the jobs file's path: it follows the file as the workers do."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from celery import Celery
from lytics_samples import TOKEN, VIP_SLUG, body, queue_length, queued_events, segment_event
from starlette.testclient import TestClient

from core.jobs import JobsFileError
from core.settings import Settings
from producers.webhook import create_app
from tests.harness import jobs_toml

VIP = {"id": "vip", "audiences": [VIP_SLUG], "new_list_name": "VIP"}
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CHURN = segment_event(segment_id="c0ffee", slug="churn_risk")


@pytest.fixture
def jobs_file(tmp_path: Path) -> Path:
    path = tmp_path / "jobs.toml"
    path.write_text(jobs_toml([VIP]))
    return path


@pytest.fixture
def receiver(settings: Settings, celery_app: Celery, jobs_file: Path) -> Iterator[TestClient]:
    app = create_app(settings, jobs_file, celery_app, redis.Redis.from_url(str(settings.redis_url)))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def test_an_audience_added_while_running_is_accepted(
        receiver: TestClient, jobs_file: Path, redis_client: redis.Redis, prefix: str) -> None:
    """Events of an audience added to the file are queued, not answered 'ignored'."""
    before = receiver.post("/webhooks/lytics/vip", json=body(CHURN), headers=AUTH)
    assert before.json() == {"accepted": 0, "ignored": 1}
    jobs_file.write_text(jobs_toml([{**VIP, "audiences": [VIP_SLUG, "churn_risk"]}]))
    after = receiver.post("/webhooks/lytics/vip", json=body(CHURN), headers=AUTH)
    assert (after.status_code, after.json()) == (202, {"accepted": 1, "ignored": 0})
    assert [e["audience"] for e in queued_events(redis_client, prefix)] == ["churn_risk"]


def test_a_job_added_while_running_is_accepted_with_its_own_token(
        receiver: TestClient, jobs_file: Path, monkeypatch: pytest.MonkeyPatch,
        redis_client: redis.Redis, prefix: str) -> None:
    """A new job is known at once, and its webhook_token_env is resolved on reload."""
    monkeypatch.setenv("NEWS_HOOK_TOKEN", "news-own-token")
    news = {"id": "news", "audiences": [VIP_SLUG], "new_list_name": "News",
            "webhook_token_env": "NEWS_HOOK_TOKEN"}
    own = {"X-Api-Key": "news-own-token"}
    assert receiver.post("/webhooks/lytics/news", json=body(), headers=AUTH).status_code == 404
    jobs_file.write_text(jobs_toml([VIP, news]))
    assert receiver.post("/webhooks/lytics/news", json=body(), headers=own).status_code == 202
    assert receiver.post("/webhooks/lytics/news", json=body(), headers=AUTH).status_code == 401
    assert queue_length(redis_client, prefix) == 1


def test_a_bad_edit_keeps_the_last_good_file(
        receiver: TestClient, jobs_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A typo in the file neither stops the receiver nor drops the jobs it had."""
    jobs_file.write_text(jobs_toml([VIP]) + "\n[[jobs]]\nid = 'typo'\n")
    with caplog.at_level(logging.ERROR, logger="core.jobs"):
        answers = [receiver.post("/webhooks/lytics/vip", json=body(), headers=AUTH).status_code
                   for _ in range(5)]
    assert answers == [202] * 5
    assert len([r for r in caplog.records if r.name == "core.jobs"]) == 1


def test_a_new_job_without_a_token_keeps_the_last_good_file(
        settings: Settings, celery_app: Celery, jobs_file: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a shared token, a new job lacking its own is refused, not open to anyone."""
    monkeypatch.setenv("VIP_HOOK_TOKEN", "vip-own-token")
    guarded = {**VIP, "webhook_token_env": "VIP_HOOK_TOKEN"}
    jobs_file.write_text(jobs_toml([guarded]))
    bare = settings.model_copy(update={"webhook_token": None})
    app = create_app(bare, jobs_file, celery_app, redis.Redis.from_url(str(settings.redis_url)))
    with TestClient(app, raise_server_exceptions=False) as client:
        jobs_file.write_text(jobs_toml([guarded, {"id": "open", "audiences": [VIP_SLUG],
                                                  "new_list_name": "Open"}]))
        assert client.post("/webhooks/lytics/open", json=body()).status_code == 401
        own = {"X-Api-Key": "vip-own-token"}
        assert client.post("/webhooks/lytics/vip", json=body(), headers=own).status_code == 202


def test_a_bad_file_at_start_is_one_line(settings: Settings, celery_app: Celery,
                                         jobs_file: Path) -> None:
    """With no good version to keep, the receiver is not built."""
    jobs_file.write_text("[[jobs]]\nid = 'typo'\n")
    with pytest.raises(JobsFileError, match="'typo'"):
        create_app(settings, jobs_file, celery_app, redis.Redis.from_url(str(settings.redis_url)))
