"""Job state changes reach Sentry once each, scrubbed (issue #18): auth failed, list deleted,
paused, stopped, and back to ready."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import redis
import sentry_sdk
from sentry_sdk.envelope import Envelope

from core.keys import JobKeys
from core.settings import Settings
from tests.ops.test_sentry import EMAIL, KEY, Captured
from tests.unit.test_brake import people
from worker.ops import observability
from worker.state.brake import BrakePolicy, RemovalBrake
from worker.state.counters import ADDED, REMOVED
from worker.state.jobstate import JobStateStore


@pytest.fixture
def sentry() -> Iterator[Captured]:
    """Sentry started as the worker starts it, its envelopes kept in memory."""
    transport = Captured()
    assert observability.init_sentry(Settings(), transport=transport)
    yield transport
    sentry_sdk.get_client().close()
    sentry_sdk.init()


def events(transport: Captured) -> list[dict[str, object]]:
    out = []
    for envelope in transport.envelopes:
        assert isinstance(envelope, Envelope)
        for item in envelope.items:
            if item.type == "event" and item.payload.json is not None:
                out.append(item.payload.json)
    return out


def test_each_state_change_is_one_scrubbed_alert(sentry: Captured, redis_url: str) -> None:
    store = JobStateStore(redis.Redis.from_url(redis_url), JobKeys(f"s{time.time_ns()}", "vip"))
    # given a ready job (new → ready alerts nobody)
    store.ready("L1")
    assert events(sentry) == []
    # when Klaviyo refuses the key, twice (a retry finds the same)
    store.auth_failed(f"Klaviyo refused the key {KEY} (401) while adding {EMAIL}")
    store.auth_failed(f"Klaviyo refused the key {KEY} (401) while adding {EMAIL}")
    # and the key works again, then the job is paused, a bootstrap tries to make it ready,
    # and it is stopped, and its list is found deleted after a restart
    store.ready("L1")
    store.pause()
    store.ready("L1")  # refused while paused: no change, no alert
    store.stop()
    store.restart()
    store.failed("list L1 was deleted in Klaviyo; fix the job (nothing was created)")
    # then one event per change, at its level, grouped per job and state
    found = [(e["level"], e["tags"]["job_status"], e["fingerprint"]) for e in events(sentry)]
    assert found == [
        ("error", "auth_failed", ["klaviyo-export-job-state", "vip", "auth_failed"]),
        ("info", "ready", ["klaviyo-export-job-state", "vip", "ready"]),
        ("warning", "paused", ["klaviyo-export-job-state", "vip", "paused"]),
        ("warning", "stopped", ["klaviyo-export-job-state", "vip", "stopped"]),
        ("error", "failed", ["klaviyo-export-job-state", "vip", "failed"]),
    ]
    first = events(sentry)[0]
    assert first["tags"]["job"] == "vip" and first["tags"]["job_status_before"] == "ready"
    raw = json.dumps(events(sentry))
    assert KEY not in raw and EMAIL not in raw and "refused the key" in raw


def test_the_removal_brake_engaging_is_one_alert_per_engagement(sentry: Captured,
                                                                redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    keys = JobKeys(f"s{time.time_ns()}", "vip")
    client.hset(keys.counters, mapping={ADDED: 10})
    brake = RemovalBrake(client, keys, BrakePolicy(share=0.5, window_seconds=60, minimum=0))
    # given removals within the share, then a flush that would take 7 of 10 off
    assert brake.admit(people(3), now_ms=1_000)
    client.hset(keys.counters, REMOVED, 3)  # the flush removed them
    assert not brake.admit(people(4, 3), now_ms=2_000)
    # when flush after flush finds the brake held
    for at in range(3_000, 8_000, 1_000):
        assert not brake.admit(people(1, 7), now_ms=at)
    # then one warning, scrubbed, grouped per job
    found = [(e["level"], e["tags"]["job_status"], e["fingerprint"]) for e in events(sentry)]
    assert found == [("warning", "brake_engaged",
                      ["klaviyo-export-job-state", "vip", "brake_engaged"])]
    assert "7 of 10 members would leave" in str(events(sentry)[0]["message"])
    # and a released brake that engages again later is a second alert
    brake.release(now_ms=9_000)
    assert not brake.admit(people(8), now_ms=9_000 + 120_000)
    assert not brake.admit(people(8, 8), now_ms=9_000 + 121_000)
    assert len(events(sentry)) == 2
