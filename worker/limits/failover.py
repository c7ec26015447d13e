"""The limiter after a Redis failover: slower for a moment, never over Klaviyo's limits.

The limiter's windows live on the Redis master. Replication is asynchronous, so a replica
promoted by Sentinel may lack the last calls counted on the old master: granting on its
counts alone could let a burst through above Klaviyo's limits. So the windows carry the
identity of the master they were counted on (``{p}:rl:epoch``, the master's ``run_id``).
A process that finds a different master (at its first call, and whenever its Redis client
follows the master to a new address, :func:`core.redisconn.master_generation`) raises a
fence on it that lasts until the current steady window (60 s, divided by
``RATE_LIMIT_SPEED``) has ended, plus the limiter's boundary guard: by then every window a
lost count belonged to has closed. While the fence stands, :meth:`Fence.wait` says how long,
and the client's gate refuses every call with ``Throttled`` (the callers reschedule, as for
our own limiter's refusals); a call whose grant crossed the failover is refused as well (it
was counted, which is only conservative).

Because the check compares identities stored in Redis, a worker process started after the
failover (Celery replaces pool processes whose task was cut off) keeps to the fence as well
as one that saw the change. The fence is used with a Sentinel ``REDIS_URL`` only: with one
Redis a restart has no lag to cover beyond its own AOF fsync (``core.redisconn``).
What is not covered: a daily window (86,400 s) is not waited out, so it may lose the few calls
made in the replication lag before the failover (README, "High availability").
"""

from __future__ import annotations

import logging
import time

import redis

from core.keys import rate_limit_epoch_key, rate_limit_fence_key
from core.redisconn import master_generation
from worker.limits.ratelimit import BOUNDARY_GUARD_SECONDS, STEADY_SECONDS

log = logging.getLogger(__name__)

# KEYS: fence, epoch. ARGV: this master's run_id, window length (µs), guard (µs). When the
# windows were counted on another master, sets the fence to the end of the current window plus
# the guard (only ever extending it). Returns {fence PTTL (ms), 1 if raised now else 0}.
_CHECK = """
local seen = redis.call('GET', KEYS[2])
local raised = 0
if seen ~= ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[1])
  if seen then
    local len, guard = tonumber(ARGV[2]), tonumber(ARGV[3])
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
    local want = math.ceil(((math.floor(now / len) + 1) * len - now + guard) / 1000)
    if redis.call('PTTL', KEYS[1]) < want then
      redis.call('SET', KEYS[1], '1', 'PX', want)
    end
    raised = 1
  end
end
return {redis.call('PTTL', KEYS[1]), raised}
"""


class Fence:
    """This process's view of the failover fence (one per process, like the limiter)."""

    def __init__(self, client: redis.Redis, *, prefix: str, speed: float = 1.0) -> None:
        self._client = client
        self._keys = [rate_limit_fence_key(prefix), rate_limit_epoch_key(prefix)]
        self._window_us = STEADY_SECONDS * 1_000_000 / speed
        self._guard_us = BOUNDARY_GUARD_SECONDS * 1_000_000 / speed
        self._check = client.register_script(_CHECK)  # reloaded by redis-py on NOSCRIPT
        self._seen: int | None = None
        self._until = 0.0  # monotonic

    def wait(self) -> float:
        """Seconds the fence still stands (0.0: none), checked again after a change of master."""
        generation = master_generation(self._client)
        if generation != self._seen:
            pttl = self._check_master()
            self._seen = generation
            self._until = time.monotonic() + max(pttl, 0) / 1000
        return max(0.0, self._until - time.monotonic())

    def _check_master(self) -> int:
        run_id = str(self._client.info("server")["run_id"])
        pttl, raised = self._check(keys=self._keys, args=[run_id, self._window_us, self._guard_us])
        if int(raised):
            log.warning("limiter: the Redis master changed; no Klaviyo call for %.1f s, until "
                        "the current window is over", max(int(pttl), 0) / 1000)
        return int(pttl)
