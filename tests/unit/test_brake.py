"""The brake's rule: people removed within the window past a share of the list (and past the
minimum) hold the brake until it is released; a release lets the held go and passes one window.
A person whose removal is tried again counts once."""

from __future__ import annotations

import redis

from core.keys import JobKeys
from worker.state.brake import RECHECK_SECONDS, BrakePolicy, RemovalBrake

KEYS = JobKeys("t", "vip")
MINUTE_MS = 60_000


def people(n: int, start: int = 0) -> list[str]:
    return [f"u{i}@x.io" for i in range(start, start + n)]


def brake(client: redis.Redis, members: int, *, share: float = 0.2, minimum: int = 100,
          window: float = 600) -> RemovalBrake:
    client.hset(KEYS.counters, mapping={"added": members, "removed": 0})
    return RemovalBrake(client, KEYS, BrakePolicy(share, window, minimum))


def test_removals_pass_up_to_the_share_then_the_brake_holds(redis_client: redis.Redis) -> None:
    b = brake(redis_client, 10_000)
    assert b.admit(people(1000), now_ms=0)
    assert b.admit(people(1000, 1000), now_ms=1)  # 2,000 = 20 % of 10,000
    redis_client.hset(KEYS.counters, "removed", 2000)  # what the flush counted meanwhile
    assert not b.admit(people(1, 2000), now_ms=2)
    assert b.state() == {"held": True, "since": 0.002, "wanted": 2001, "of": 10_000,
                         "waiting": 0, "share": 0.2}
    assert not b.admit(people(1, 2001), now_ms=3)  # held: nothing passes, however small


def test_small_batches_below_the_minimum_never_hold(redis_client: redis.Redis) -> None:
    b = brake(redis_client, 100, minimum=100)
    assert b.admit(people(60), now_ms=0)
    assert b.admit(people(40, 60), now_ms=1)  # all of a small list: 100 people
    assert not b.admit(people(1, 100), now_ms=2)


def test_the_window_forgets_old_removals(redis_client: redis.Redis) -> None:
    b = brake(redis_client, 10_000, window=60)
    assert b.admit(people(2000), now_ms=0)
    assert b.admit(people(2000, 2000), now_ms=MINUTE_MS + 1)


def test_a_share_of_one_turns_it_off(redis_client: redis.Redis) -> None:
    assert brake(redis_client, 10, share=1.0, minimum=0).admit(people(10_000))


def test_release_lets_the_held_go_now_and_passes_one_window(redis_client: redis.Redis) -> None:
    b = brake(redis_client, 1000, minimum=0)
    assert not b.admit(people(500), now_ms=0)
    redis_client.zadd(KEYS.inflight, {"a@x.io": 1, "b@x.io": 1})
    b.hold(["a@x.io", "b@x.io"], now_ms=10)
    due = 10 + int(RECHECK_SECONDS * 1000)
    assert redis_client.zrange(KEYS.pending, 0, -1, withscores=True) == [("a@x.io", due),
                                                                         ("b@x.io", due)]
    assert redis_client.zcard(KEYS.inflight) == 0 and b.state()["waiting"] == 2
    assert b.release(now_ms=20) == 2
    assert redis_client.zrange(KEYS.pending, 0, -1, withscores=True) == [("a@x.io", 20),
                                                                         ("b@x.io", 20)]
    assert b.state() == {"held": False}
    assert b.admit(people(900, 500), now_ms=30)  # within the released window
    # the window is over: the brake is back
    assert not b.admit(people(900, 1400), now_ms=30 + 600_000)


def test_a_removal_tried_again_counts_once(redis_client: redis.Redis) -> None:
    """A 429, a 5xx or a profile still awaited bring the same people back to the brake: flush
    after flush of the same 1,500 is 1,500 removals, not a mass removal."""
    b = brake(redis_client, 10_000, minimum=1000)
    for attempt in range(20):
        assert b.admit(people(1500), now_ms=attempt)
    assert b.state() == {"held": False}
    redis_client.hset(KEYS.counters, "removed", 1500)  # what the flush counted meanwhile
    assert b.admit(people(500, 1500), now_ms=30)  # 2,000 people: 20 %
    redis_client.hset(KEYS.counters, "removed", 2000)
    assert not b.admit(people(1, 2000), now_ms=31)
