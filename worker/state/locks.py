"""Locks that live as long as their holder: one worker at a time fills an account's opt-out
mirror, bootstraps a job's list, drops a job's audiences or runs its scheduled full audit.

The lock is a Redis key with a short TTL (redis-py's :class:`redis.lock.Lock`), renewed by a
daemon thread while the holder runs. A holder killed with SIGKILL stops renewing, so another
worker may take over within one TTL, however long the work itself may take: a lock sized to
the longest work would stand that long after a crash, and everything waiting on it with it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from redis.exceptions import LockError

log = logging.getLogger(__name__)

TTL_SECONDS = 10.0  # how long a dead holder's lock stands
RENEWALS_PER_TTL = 3  # a live holder renews this often per TTL (one missed renewal is fine)


@contextmanager
def held(client: redis.Redis, key: str, ttl_seconds: float = TTL_SECONDS) -> Iterator[bool]:
    """Hold ``key`` for the block, renewed in the background; yields False (and holds
    nothing) when another live holder has it."""
    lock = client.lock(key, timeout=ttl_seconds, blocking=False, thread_local=False)
    if not lock.acquire():
        yield False
        return
    stop = threading.Event()
    renewer = threading.Thread(target=_renew, args=(lock, stop, ttl_seconds / RENEWALS_PER_TTL),
                               name=f"renew {key}", daemon=True)
    renewer.start()
    try:
        yield True
    finally:
        stop.set()
        renewer.join()
        try:
            lock.release()
        except (LockError, redis.RedisError):  # lapsed and taken, or Redis away: TTL ends it
            log.warning("lock %s was no longer ours at release", key)


def _renew(lock: redis.lock.Lock, stop: threading.Event, every: float) -> None:
    while not stop.wait(every):
        try:
            lock.reacquire()
        except LockError:  # lapsed (a long pause) and maybe taken: stop claiming it
            log.warning("lock %s lapsed while held", lock.name)
            return
        except redis.RedisError:  # Redis away for a moment: try again next time
            continue
