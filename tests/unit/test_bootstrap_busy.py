"""While one worker finds or creates a new job's list, the others wait their turn: a flush
looks again shortly (it neither fails nor loses its follow-up), beat's bootstrap leaves it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.keys import JobKeys
from core.settings import load_settings
from tests.harness import jobs_toml
from worker import runtime
from worker.engine import export as engine
from worker.limits import retry
from worker.state import locks


@pytest.fixture
def new_job(redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[JobKeys]:
    """A job that has no list yet (its first flush bootstraps it); no call reaches Klaviyo."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    path = tmp_path / "jobs.toml"
    path.write_text(jobs_toml([{"id": "fresh", "audiences": ["a"]}]))
    for name, value in {"REDIS_URL": redis_url, "KEY_PREFIX": prefix,
                        "EXPORT_JOBS_FILE": str(path)}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(engine, "klaviyo", lambda job, *, background=False: None)
    load_settings.cache_clear()
    runtime.redis_client.cache_clear()
    yield JobKeys(prefix, "fresh")
    load_settings.cache_clear()
    runtime.redis_client.cache_clear()


def test_a_flush_waits_for_the_bootstrap_another_worker_runs(new_job: JobKeys) -> None:
    lined_up: list[float] = []
    with locks.held(runtime.redis_client(), new_job.bootstrap_lock) as other_worker:
        assert other_worker
        outcome = engine.flush("fresh", lambda _job, countdown: lined_up.append(countdown),
                               lambda _job, _kjob: None)
        assert engine.run_bootstrap("fresh") is None
    assert outcome.again_in == retry.BOOTSTRAP_BUSY_SECONDS and not outcome.stopped
    assert len(lined_up) == 1 and lined_up[0] >= retry.BOOTSTRAP_BUSY_SECONDS
