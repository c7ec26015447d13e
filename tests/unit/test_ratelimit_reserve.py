"""Live first: a background caller leaves a reserve of every window to live calls, a reserve
that shrinks as the window runs out, so a backfill alone still gets the whole window."""

from __future__ import annotations

import time

import pytest
import redis

from contract.operations import Operation
from worker.limits.ratelimit import RateLimiter

OP = Operation("t_reserve", "GET", "/t", burst=10_000, steady=100)  # steady is what binds
ACCOUNT = "acct-reserve"
RESERVE = 0.2


@pytest.fixture
def limiter(redis_client: redis.Redis) -> RateLimiter:
    return RateLimiter(redis_client, prefix="test-reserve", headroom=1.0, speed=1.0)


def _left_in_minute(client: redis.Redis) -> float:
    sec, usec = client.time()
    return 60 - (sec + usec / 1e6) % 60


def _second(client: redis.Redis) -> int:
    return int(client.time()[0])


def _take(limiter: RateLimiter, reserve: float) -> int:
    """Calls granted one by one until the first refusal."""
    granted = 0
    while limiter.acquire(ACCOUNT, OP, reserve=reserve) == 0.0:
        granted += 1
    return granted


def test_a_backfill_leaves_live_calls_their_share_of_the_time_left(
    limiter: RateLimiter, redis_client: redis.Redis
) -> None:
    if _left_in_minute(redis_client) < 5:
        time.sleep(_left_in_minute(redis_client) + 0.01)
    left = _left_in_minute(redis_client)
    background = _take(limiter, RESERVE)
    kept = int(RESERVE * 100 * left / 60)  # the reserve still kept this far into the minute
    assert 100 - kept <= background <= 101 - kept, (background, kept)
    wait = limiter.acquire(ACCOUNT, OP, reserve=RESERVE)
    assert 0 < wait <= 60 / (RESERVE * 100) + 0.05  # the next call: when the reserve shrinks
    live = _take(limiter, 0.0)
    assert live == 100 - background  # a live call finds the window's rest open


def test_a_background_caller_alone_gets_the_whole_window(redis_client: redis.Redis) -> None:
    """At speed 60 a minute window lasts a second: waiting as told, a backfill ends up with all
    but the last sliver of the window (the reserve is zero when the window ends)."""
    fast = RateLimiter(redis_client, prefix="test-reserve-fast", headroom=1.0, speed=60)
    sec, usec = redis_client.time()
    time.sleep(1 - (sec + usec / 1e6) % 1 + 0.002)  # a fresh one-second window
    window = _second(redis_client)
    granted = 0
    while _second(redis_client) == window:
        wait = fast.acquire(ACCOUNT, OP, reserve=RESERVE)
        if wait == 0.0:
            granted += 1
        else:
            time.sleep(min(wait, 0.01))
    assert granted >= 95, granted


def test_reserve_is_a_share_below_one(limiter: RateLimiter) -> None:
    with pytest.raises(ValueError, match="reserve"):
        limiter.acquire(ACCOUNT, OP, reserve=1.0)


def test_a_small_window_keeps_no_reserve(limiter: RateLimiter) -> None:
    """The reserve is whole calls: a window of one call (a burst of 1) keeps none back."""
    tiny = Operation("t_tiny", "GET", "/t", burst=1, steady=1000)
    assert limiter.acquire(ACCOUNT, tiny, reserve=RESERVE) == 0.0
