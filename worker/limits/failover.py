"""The limiter after a Redis failover: slower for a moment, never over Klaviyo's limits.

The limiter's windows live on the Redis master. Replication is asynchronous, so a replica
promoted by Sentinel may lack the last calls counted on the old master (or, promoted from a
stale copy, whole windows): granting on its counts alone could let a burst through above
Klaviyo's limits. So when this process sees its Redis client follow the master to a new
address (:func:`core.redisconn.master_generation`), it raises a fence on the new master that
lasts until the current steady window (60 s, divided by ``RATE_LIMIT_SPEED``) has ended, plus
the limiter's boundary guard: by then every window a lost count belonged to has closed.
While the fence stands, :meth:`Fence.wait` says how long, and the client's gate refuses every call
with ``Throttled`` (the
callers reschedule, as for our own limiter's refusals); a call whose grant crossed the
failover is refused as well (it was counted, which is only conservative).

Every process reads the fence once when it starts and again whenever it sees a change of
master, so processes that did not notice the failover themselves (started after it) keep to
it too. What is not covered: a daily window (86,400 s) is not waited out, so it may lose the
few calls made in the replication lag before the failover (README, "High availability"); and
a plain ``redis://`` URL whose address fails over behind DNS is not detected.
"""

from __future__ import annotations

import time

import redis

from core.keys import rate_limit_fence_key
from core.redisconn import master_generation
from worker.limits.ratelimit import BOUNDARY_GUARD_SECONDS, STEADY_SECONDS

# ARGV: window length (µs), guard (µs). Sets the fence to the end of the current window plus
# the guard, only ever extending it; returns its PTTL (ms).
_RAISE = """
local len, guard = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local want = math.ceil(((math.floor(now / len) + 1) * len - now + guard) / 1000)
if redis.call('PTTL', KEYS[1]) < want then
  redis.call('SET', KEYS[1], '1', 'PX', want)
end
return redis.call('PTTL', KEYS[1])
"""


class Fence:
    """This process's view of the failover fence (one per process, like the limiter)."""

    def __init__(self, client: redis.Redis, *, prefix: str, speed: float = 1.0) -> None:
        self._client = client
        self._key = rate_limit_fence_key(prefix)
        self._window_us = STEADY_SECONDS * 1_000_000 / speed
        self._guard_us = BOUNDARY_GUARD_SECONDS * 1_000_000 / speed
        self._raise = client.register_script(_RAISE)  # reloaded by redis-py on NOSCRIPT
        self._seen: int | None = None
        self._until = 0.0  # monotonic

    def wait(self) -> float:
        """Seconds the fence still stands (0.0: none), read again after a change of master."""
        generation = master_generation(self._client)
        if generation != self._seen:
            first = self._seen is None
            pttl = int(self._client.pttl(self._key)) if first else self._raise_fence()
            self._seen = generation
            self._until = time.monotonic() + max(pttl, 0) / 1000
        return max(0.0, self._until - time.monotonic())

    def _raise_fence(self) -> int:
        return int(self._raise(keys=[self._key], args=[self._window_us, self._guard_us]))
