"""After a flush, the next one is lined up for whatever waits, whoever deferred it: a check
another flush put off (a removal waiting for its profile) is looked at when it is due, even
when the flush lined up for it found other users to send and deferred nobody itself."""

from __future__ import annotations

import time

import redis

from core.keys import JobKeys
from worker.engine import export as engine
from worker.engine.flush import FlushOutcome
from worker.limits import retry
from worker.state.desired import DesiredState

KEYS = JobKeys("test", "follow")


def lined_up_after(state: DesiredState, outcome: FlushOutcome) -> list[float]:
    countdowns: list[float] = []
    engine._follow_up("follow", state, outcome, lambda _job, c: countdowns.append(c))
    return countdowns


def test_a_check_deferred_by_another_flush_is_lined_up_when_due(
        redis_client: redis.Redis) -> None:
    state = DesiredState(redis_client, KEYS)
    due = int(time.time() * 1000) + 3000
    state.defer([("ann@example.com", due, due - 5000)])  # another flush's removal, in 3 s
    (countdown,) = lined_up_after(state, FlushOutcome(claimed=5))  # this one deferred nobody
    assert 2.5 < countdown <= 3 + retry.FOLLOW_UP_JITTER_SECONDS


def test_nothing_is_lined_up_when_nothing_waits(redis_client: redis.Redis) -> None:
    assert lined_up_after(DesiredState(redis_client, KEYS), FlushOutcome(claimed=5)) == []


def test_the_sooner_of_its_own_recheck_and_anothers_counts(redis_client: redis.Redis) -> None:
    state = DesiredState(redis_client, KEYS)
    due = int(time.time() * 1000) + 30_000
    state.defer([("ann@example.com", due, due - 5000)])
    (countdown,) = lined_up_after(state, FlushOutcome(claimed=5, recheck_in=1.0))
    assert 1.0 <= countdown <= 1 + retry.FOLLOW_UP_JITTER_SECONDS
