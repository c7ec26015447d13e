"""The global rate limiter: one budget per Klaviyo account and operation, shared by every worker.

Klaviyo counts calls in fixed windows aligned to the clock: burst (1 s), steady (60 s) and, for
a few operations, daily (86,400 s). :class:`RateLimiter` keeps the same windows in Redis and
decides every call in ONE Lua script that reads the server clock (``redis.call('TIME')``), so
workers on machines with skewed clocks still share one budget. A call is granted only if every
window and the shared cool-down allow it; a refused call counts in no window.

Redis keys (strings and hashes, each with a TTL so nothing outlives its window)::

    {prefix}:rl:{account}:{operation}:cd        cool-down; its PTTL is the pause left
    {prefix}:rl:{account}:{operation}:b|s|d     hash {w: window index, n: calls counted}

``speed`` divides every window's length (a sandbox started with ``--speed N``): windows start
at real multiples of ``length / speed``, the same boundaries as the sandbox's virtual clock.
Returned waits and cool-downs are real seconds. When several windows are full the wait is the
longest of them, since the call cannot pass before all have reset.

Live first: a background caller (a backfill, an attribute drain) passes ``reserve`` (a share
of every window). It is admitted only while the window's count stays under
``allowed - floor(reserve * allowed * time left in the window / its length)``: the reserve is kept
for live calls and shrinks as the window runs out, so by its end a backfill may use whatever
live traffic left, and a backfill alone still gets the whole window.
"""

from __future__ import annotations

import math

from redis import Redis

from contract.operations import Operation
from core.keys import rate_limit_key

BURST_SECONDS = 1
STEADY_SECONDS = 60
DAILY_SECONDS = 86_400
_US = 1_000_000
BOUNDARY_GUARD_SECONDS = 0.1  # a call this close to a window's end may land in the next
MAX_SPEED = 1_000_000  # a burst window of 1 µs: server time has no finer grain

# KEYS: cool-down, then one key per window. ARGV: n, guard (µs), then (length in real µs,
# allowed) per window; a length may be fractional (1 s at speed 30), so windows start at exact
# multiples of it, as the sandbox's do. A call granted in the last ``guard`` of a steady or
# daily window may reach Klaviyo in the next one, so it is charged to both (field p
# pre-charges the next window); the 1 s burst window is left exact. The last ARGV is the
# reserve a background caller leaves (0 for a live one; see the module docstring). Returns 0
# when granted, else the whole microseconds to wait (>= 1).
_ACQUIRE = """
local n, guard = tonumber(ARGV[1]), tonumber(ARGV[2])
local reserve = tonumber(ARGV[2 * #KEYS + 1] or '0')
local pause = redis.call('PTTL', KEYS[1])
if pause > 0 then return pause * 1000 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local wait, idx, used, pre, cross = 0, {}, {}, {}, {}
for i = 2, #KEYS do
  local len, allowed = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local w = math.floor(now / len)
  local v = redis.call('HMGET', KEYS[i], 'w', 'n', 'p')
  idx[i], used[i], pre[i] = w, 0, 0
  if tonumber(v[1]) == w then
    used[i], pre[i] = tonumber(v[2]), tonumber(v[3] or 0)
  elseif tonumber(v[1]) == w - 1 then
    used[i] = tonumber(v[3] or 0)
  end
  cross[i] = i >= 3 and math.floor((now + math.min(guard, len / 10)) / len) > w
  local left = (w + 1) * len - now
  if used[i] + n > allowed then
    wait = math.max(wait, 1, math.ceil(left))
  elseif cross[i] and pre[i] + n > allowed then
    wait = math.max(wait, 1, math.ceil(left))
  elseif reserve > 0 and used[i] + n > allowed - math.floor(reserve * allowed * left / len) then
    -- the reserve (whole calls) shrinks with the time left: wait until it leaves room for n
    local room = (allowed - used[i] - n + 1) * len / (reserve * allowed)
    wait = math.max(wait, 1, math.ceil(left - room) + 1)
  end
end
if wait > 0 then return wait end
for i = 2, #KEYS do
  local len = tonumber(ARGV[2 * i - 1])
  local p, last = pre[i], idx[i] + 1
  if cross[i] then p, last = p + n, idx[i] + 2 end
  redis.call('HSET', KEYS[i], 'w', idx[i], 'n', used[i] + n, 'p', p)
  redis.call('PEXPIRE', KEYS[i], math.ceil((last * len - now) / 1000) + 1000)
end
return 0
"""

# KEYS: cool-down. ARGV: pause in ms. Extends the pause, never shortens it.
_COOLDOWN = """
local want = tonumber(ARGV[1])
if redis.call('PTTL', KEYS[1]) < want then
  redis.call('SET', KEYS[1], '1', 'PX', want)
end
return redis.call('PTTL', KEYS[1])
"""


def allowed_calls(limit: int, headroom: float) -> int:
    """Calls we allow ourselves per window: ``floor(limit * headroom)``, but at least one."""
    return max(1, math.floor(limit * headroom + 1e-9))


class RateLimiter:
    """Fixed-window limits per (account, operation), decided atomically on the Redis server."""

    def __init__(
        self, redis: Redis, *, prefix: str, headroom: float = 0.9, speed: float = 1.0
    ) -> None:
        if not 0 < headroom <= 1:
            raise ValueError(f"headroom must be in (0, 1], not {headroom}")
        if not 0 < speed <= MAX_SPEED:
            raise ValueError(f"speed must be in (0, {MAX_SPEED}], not {speed}")
        self._redis = redis
        self._prefix = prefix
        self.headroom = headroom
        self.speed = speed
        self._acquire = redis.register_script(_ACQUIRE)
        self._cooldown = redis.register_script(_COOLDOWN)

    def acquire(self, account: str, op: Operation, n: int = 1, reserve: float = 0.0) -> float:
        """Count ``n`` calls and return 0.0, or count nothing and return the seconds to wait.

        The wait is the cool-down left or, when windows are full, the time until every full
        window has reset (the longest of them), since only then can the same call pass.
        ``reserve`` (0 ≤ reserve < 1) makes this a background call that leaves that share of
        each window, shrinking with the time the window has left, to live calls.
        """
        if not 0 <= reserve < 1:
            raise ValueError(f"reserve must be in [0, 1), not {reserve}")
        windows = self._windows(op)
        if n < 1 or any(n > allowed for _, allowed in windows):
            raise ValueError(f"{op.name}: cannot acquire {n} calls (window allowances {windows})")
        keys = [self._key(account, op, "cd"), *(self._key(account, op, s) for s in "bsd")]
        args: list[float] = [n, BOUNDARY_GUARD_SECONDS * _US / self.speed]
        for length, allowed in windows:
            args += [length, allowed]
        args.append(reserve)
        wait_us = int(self._acquire(keys=keys[: 1 + len(windows)], args=args))
        return wait_us / _US

    def cooldown(self, account: str, op: Operation, seconds: float) -> None:
        """Pause (account, op) for every worker for ``seconds`` real seconds; only extends."""
        if seconds <= 0:
            return
        self._cooldown(keys=[self._key(account, op, "cd")], args=[math.ceil(seconds * 1000)])

    def cooldown_remaining(self, account: str, op: Operation) -> float:
        """Real seconds left in the shared pause of (account, op); 0.0 when none."""
        pttl = int(self._redis.pttl(self._key(account, op, "cd")))
        return max(pttl, 0) / 1000

    def _windows(self, op: Operation) -> list[tuple[float, int]]:
        """(real length in µs after ``speed``, calls allowed) for burst, steady and daily if set."""
        limits = [(BURST_SECONDS, op.burst), (STEADY_SECONDS, op.steady)]
        if op.daily is not None:
            limits.append((DAILY_SECONDS, op.daily))
        return [
            (seconds * _US / self.speed, allowed_calls(limit, self.headroom))
            for seconds, limit in limits
        ]

    def _key(self, account: str, op: Operation, suffix: str) -> str:
        return rate_limit_key(self._prefix, account, op.name, suffix)
