"""The realtime queue's depth, read from Redis at most every half second.

Kombu keeps a Redis queue as a list named ``{key_prefix}:celery:{queue}``; ``LLEN``
counts its messages (each message holds one body's events for one action).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import redis

from core import names
from core.keys import broker_queue_key
from producers.webhook.errors import RETRY_AFTER_BUSY, RETRY_AFTER_DOWN, Unavailable


def queue_key(key_prefix: str, queue: str = names.REALTIME) -> str:
    """The Redis list that holds ``queue``'s messages."""
    return broker_queue_key(key_prefix, queue)


class QueueGauge:
    """Refuses new work while the queue is deeper than ``limit`` or Redis does not answer."""

    def __init__(self, client: redis.Redis, key: str, limit: int, *, ttl: float = 0.5,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client, self.key, self.limit, self.ttl, self.clock = client, key, limit, ttl, clock
        self._lock = threading.Lock()
        self._depth = 0
        self._read_at = float("-inf")

    def depth(self) -> int:
        """The cached depth, refreshed with one ``LLEN`` when older than ``ttl``."""
        with self._lock:
            now = self.clock()
            if now - self._read_at >= self.ttl:
                self._depth = int(self.client.llen(self.key))
                self._read_at = now
            return self._depth

    def check(self) -> None:
        """Raise :class:`Unavailable` unless the queue can take more work now."""
        try:
            depth = self.depth()
        except (redis.RedisError, OSError):
            raise Unavailable("Redis is unreachable", RETRY_AFTER_DOWN) from None
        if depth > self.limit:
            raise Unavailable(f"the realtime queue holds {depth:,} messages (limit {self.limit:,})",
                              RETRY_AFTER_BUSY)
