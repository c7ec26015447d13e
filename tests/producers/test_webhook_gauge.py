"""Specs for the queue gauge: the realtime depth is read at most every half second."""

from __future__ import annotations

import pytest
import redis

from producers.webhook.errors import Unavailable
from producers.webhook.gauge import QueueGauge, queue_key


class FakeRedis:
    """Answers LLEN with a set depth, counting calls; or fails like a dead server."""

    def __init__(self, depth: int = 0, *, down: bool = False) -> None:
        self.depth, self.down, self.calls = depth, down, 0

    def llen(self, key: str) -> int:
        self.calls += 1
        if self.down:
            raise redis.ConnectionError("refused")
        return self.depth


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_queue_key_follows_kombu_global_prefix() -> None:
    """The realtime list is ``{key_prefix}:celery:realtime``."""
    assert queue_key("kae") == "kae:celery:realtime"


def test_depth_is_cached_for_the_ttl() -> None:
    """Requests within half a second share one LLEN; the next one after it reads again."""
    # given
    fake, clock = FakeRedis(7), Clock()
    gauge = QueueGauge(fake, "k", limit=10, clock=clock)  # type: ignore[arg-type]
    # when
    depths = [gauge.depth() for _ in range(50)]
    clock.now += 0.5
    fake.depth = 9
    # then
    assert (set(depths), fake.calls) == ({7}, 1)
    assert (gauge.depth(), fake.calls) == (9, 2)


def test_too_deep_is_unavailable_with_retry_after() -> None:
    """Past the limit, check() refuses with a retry delay."""
    gauge = QueueGauge(FakeRedis(11), "k", limit=10)  # type: ignore[arg-type]
    with pytest.raises(Unavailable, match="holds 11 messages") as caught:
        gauge.check()
    assert caught.value.retry_after is not None and caught.value.retry_after > 0


def test_redis_down_is_unavailable_and_not_cached() -> None:
    """A failed LLEN is a 503 reason, and the next request asks Redis again."""
    fake = FakeRedis(down=True)
    gauge = QueueGauge(fake, "k", limit=10)  # type: ignore[arg-type]
    for _ in range(2):
        with pytest.raises(Unavailable, match="Redis is unreachable"):
            gauge.check()
    assert fake.calls == 2
