"""A backfill chunk that raises: a passing Redis error runs it again, anything else counts it
as failed once, logged with its traceback (which is what reaches Sentry)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import redis
import sentry_sdk

from core.runs import RunStore
from core.settings import Settings, load_settings
from tests.ops.test_sentry import Captured
from worker import runtime
from worker.engine import backfill
from worker.ops import observability

PREFIX = "cf"


def _use_redis(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("REDIS_URL", url)
    monkeypatch.setenv("KEY_PREFIX", PREFIX)
    load_settings.cache_clear()
    runtime.redis_client.cache_clear()


@pytest.fixture(autouse=True)
def _fresh_runtime() -> Iterator[None]:
    yield
    load_settings.cache_clear()
    runtime.redis_client.cache_clear()


def _never(*_: object) -> None:
    raise AssertionError("nothing may be scheduled")


def test_a_passing_redis_error_runs_the_chunk_again_and_counts_nothing(
        monkeypatch: pytest.MonkeyPatch, redis_client: redis.Redis,
        caplog: pytest.LogCaptureFixture) -> None:
    """Redis unreachable for a moment is no reason to give up on a chunk's people."""
    store = RunStore(redis_client, PREFIX, "job", "run1")
    store.save_chunk(0, [], {})
    _use_redis(monkeypatch, "redis://127.0.0.1:9/0")  # nothing listens there: refused
    with caplog.at_level(logging.WARNING, logger=backfill.__name__):
        outcome = backfill.export_chunk("job", "run1", 0, _never, _never, attempt=2)
    assert outcome.result is None and 0 < outcome.again_in <= 60
    assert "Redis unreachable (ConnectionError)" in caplog.text
    assert store.progress() == {} and store.load_chunk(0) is not None  # not counted, kept


def test_any_other_error_counts_the_chunk_as_failed_with_a_traceback(
        monkeypatch: pytest.MonkeyPatch, redis_url: str, redis_client: redis.Redis,
        caplog: pytest.LogCaptureFixture) -> None:
    """An unreadable chunk is one failed profile in the run, and its traceback is logged."""
    _use_redis(monkeypatch, redis_url)
    redis_client.set(RunStore(redis_client, PREFIX, "job", "run1").chunk_key(0), b"{not json")
    transport = Captured()
    assert observability.init_sentry(Settings(), transport=transport)
    try:
        with caplog.at_level(logging.ERROR, logger=backfill.__name__):
            outcome = backfill.export_chunk("job", "run1", 0, _never, _never)
        sentry_sdk.flush()
    finally:
        sentry_sdk.get_client().close()
    assert outcome.result == {"n": 0, "profiles": 1, "failed": 1}
    (record,) = [r for r in caplog.records if r.name == backfill.__name__]
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert "chunk 0 failed" in record.getMessage()
    events = [item.payload.json for e in transport.envelopes for item in e.items
              if item.headers.get("type") == "event"]
    assert any("exception" in event for event in events), "the failure reached Sentry"
