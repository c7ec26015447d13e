"""Specs for lining up deferred flushes: one per job and queue, whoever asks."""

from __future__ import annotations

import redis

from core.keys import JobKeys
from worker.state import timers

KEYS = JobKeys("timers", "vip")
NOW = 1_800_000_000_000


def test_the_first_flush_for_later_is_lined_up_and_a_later_one_is_not(
        redis_client: redis.Redis) -> None:
    assert timers.line_up(redis_client, KEYS, "realtime", NOW + 2000, 2000)
    assert not timers.line_up(redis_client, KEYS, "realtime", NOW + 2000, 2000)
    assert not timers.line_up(redis_client, KEYS, "realtime", NOW + 5000, 5000)


def test_an_earlier_flush_is_lined_up_in_front_of_a_later_one(
        redis_client: redis.Redis) -> None:
    assert timers.line_up(redis_client, KEYS, "realtime", NOW + 5000, 5000)
    assert timers.line_up(redis_client, KEYS, "realtime", NOW + 1000, 1000)
    assert not timers.line_up(redis_client, KEYS, "realtime", NOW + 3000, 3000)


def test_once_the_lined_up_flush_runs_the_next_can_be_lined_up(
        redis_client: redis.Redis) -> None:
    assert timers.line_up(redis_client, KEYS, "realtime", NOW + 1000, 1000)
    timers.ran(redis_client, KEYS, "realtime", NOW + 1000)
    assert timers.line_up(redis_client, KEYS, "realtime", NOW + 9000, 9000)


def test_a_flush_that_was_overtaken_leaves_the_earlier_mark_in_place(
        redis_client: redis.Redis) -> None:
    """The later flush runs after an earlier one was lined up: that one's mark stays."""
    assert timers.line_up(redis_client, KEYS, "realtime", NOW + 5000, 5000)
    assert timers.line_up(redis_client, KEYS, "realtime", NOW + 1000, 1000)
    timers.ran(redis_client, KEYS, "realtime", NOW + 5000)
    assert not timers.line_up(redis_client, KEYS, "realtime", NOW + 2000, 2000)


def test_queues_line_up_apart_and_a_lost_flush_is_forgotten_in_time(
        redis_client: redis.Redis) -> None:
    assert timers.line_up(redis_client, KEYS, "realtime", NOW + 1000, 1000)
    assert timers.line_up(redis_client, KEYS, "backfill", NOW + 1000, 1000)
    ttl = redis_client.pttl(KEYS.flush_due("realtime"))
    assert 1000 < ttl <= 1000 + timers.GRACE_MS
