"""The global rate limiter: one budget per Klaviyo account and operation, shared by every worker,
calibrated from what Klaviyo says about the account.

Klaviyo counts calls in fixed windows: burst (1 s), steady (60 s) and, for a few operations,
daily (86,400 s). Where those windows start is not documented, and other integrations on the
same account spend the same quota. Every non-429 answer carries ``RateLimit-Limit``,
``RateLimit-Remaining`` and ``RateLimit-Reset`` for the steady window, and
:meth:`RateLimiter.observe` learns from them, per (account, operation):

- **the steady window's phase**: a call granted at server time ``g`` and observed at ``o``
  with ``Reset = r`` says the window ends in ``[g + r - q, o + r + q]`` (``q``: half the
  grain of a fractional header; a whole second for whole seconds, which Klaviyo may round
  either way); the intersection of these intervals, kept as ``[lo, hi]``, converges on the
  boundary (within a second for whole-second headers). Until the first answer the phase
  is unknown and every call counts in two windows (so no window of Klaviyo's can see more
  than our allowance); a call that may reach Klaviyo on either side of a boundary (inside
  ``[lo, hi]`` widened by the arrival spread) still counts in both;
- **the limit** (``RateLimit-Limit`` is trusted over the operation table);
- **the foreign share**: ``Limit - Remaining`` is what the whole account has used; less our
  own calls in that window, it is what others used. The reserve for others in a window is
  the larger of what they used so far in it and what they used in the last window (from the
  late observations, projected to a whole window), halved per window when they go quiet;
- **the arrival spread**: the round trip from grant to answer bounds how late a call may
  reach Klaviyo after its grant (a slowly decaying maximum, capped).

We allow ourselves ``floor((limit - reserve) * headroom)`` calls per steady window. The 1 s
burst window's phase cannot be learnt (no header describes it), so it is a sliding log: no
interval of ``1 s + arrival spread`` holds more than ``floor(burst * (1 - foreign share) *
headroom)`` grants, whatever the phase and the latency. The daily window (no header either)
stays on the epoch day with the boundary guard. A 429's ``Retry-After`` is the hard stop:
:meth:`RateLimiter.cooldown` pauses the operation for every worker.

Every decision is ONE Lua script reading the server clock (``redis.call('TIME')``), so workers
on machines with skewed clocks share one budget, and the phase is learnt in the server's time.
A refused call counts in no window.

Live first: a background caller (a backfill, an attribute drain) passes ``reserve`` (a share
of the steady window). It is admitted only while our count stays under
``allowed - floor(reserve * allowed * time left in the window / its length)``: the reserve is
kept for live calls and shrinks as the window runs out, so by its end a backfill may use
whatever live traffic left, and a backfill alone still gets the whole window.

Redis keys (each with a TTL so nothing outlives its use)::

    {prefix}:rl:{account}:{operation}:cd   cool-down; its PTTL is the pause left
    {prefix}:rl:{account}:{operation}:bl   list: grant times (µs), newest first (burst log)
    {prefix}:rl:{account}:{operation}:s    hash {w: steady window, n: calls counted, p: calls
                                           pre-charged to w + 1}
    {prefix}:rl:{account}:{operation}:d    hash {w, n, p}: the daily window
    {prefix}:rl:{account}:{operation}:c    hash: calibration {lo, hi: a boundary (µs), lim:
                                           limit, f: foreign reserve, fw/fc/fp: window,
                                           foreign used, projected, a: arrival spread (µs)}

The interface is small: :meth:`request` grants (a :class:`Grant`, its ``wait`` 0.0) or refuses
(``wait`` > 0); :meth:`observe` hands back the grant with the answer's headers;
:meth:`acquire` is ``request(...).wait`` for callers that never read an answer.
``speed`` divides every window's length (a sandbox started with ``--speed N``). Returned waits
and cool-downs are real seconds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from redis import Redis

from contract.operations import Operation
from core.keys import rate_limit_key

BURST_SECONDS = 1
STEADY_SECONDS = 60
DAILY_SECONDS = 86_400
_US = 1_000_000
BOUNDARY_GUARD_SECONDS = 0.1  # a call this close to a daily window's end may land in the next
ARRIVAL_SPREAD_SECONDS = 0.1  # assumed until a round trip is measured
MAX_ARRIVAL_SPREAD_SECONDS = 1.0  # a slower answer says little about when the call arrived
CALIBRATION_TTL_SECONDS = 6 * 3600  # forgotten after six hours without an answer
MAX_SPEED = 1_000_000  # a burst window of 1 µs: server time has no finer grain

# KEYS: cool-down, burst log, steady hash, calibration [, daily hash].
# ARGV: n, headroom, steady length (µs), table steady, burst length (µs), table burst,
#       default arrival spread (µs), spread cap (µs), background reserve (0: a live call)
#       [, daily length (µs), daily allowed, daily guard (µs)].
# Returns {wait µs} (>= 1) when refused, {0, now µs, steady window, our calls in it} granted.
_ACQUIRE = """
local n, h = tonumber(ARGV[1]), tonumber(ARGV[2])
local Ls, S, Lb, B = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local a0, amax = tonumber(ARGV[7]), tonumber(ARGV[8])
local bg = tonumber(ARGV[9])
local pause = redis.call('PTTL', KEYS[1])
if pause > 0 then return {pause * 1000} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local c = redis.call('HMGET', KEYS[4], 'lo', 'hi', 'lim', 'f', 'fw', 'fc', 'a')
local lo, hi = tonumber(c[1]), tonumber(c[2])
local limit = tonumber(c[3]) or S
local a = math.min(tonumber(c[7]) or a0, amax)
local w, cross
if lo then
  w = math.floor((now - hi) / Ls)
  cross = math.floor((now + math.min(a, Ls / 10) - lo) / Ls) > w
else
  hi = 0
  w = math.floor(now / Ls)
  cross = true
end
local fest = tonumber(c[4]) or 0
local fcur = 0
if tonumber(c[5]) == w then fcur = tonumber(c[6]) or 0 end
local reserve = math.max(fest, fcur)
local ks = math.max(1, math.floor((limit - reserve) * h + 1e-9))
local knext = math.max(1, math.floor((limit - fest) * h + 1e-9))
local share = math.min(0.9, math.max(0, reserve / limit))
local kb = math.max(1, math.floor(B * (1 - share) * h + 1e-9))
local wait = 0
-- steady
local s = redis.call('HMGET', KEYS[3], 'w', 'n', 'p')
local sw, used, pre = tonumber(s[1]), 0, 0
if sw ~= nil and sw >= w then
  w, used, pre = sw, tonumber(s[2]), tonumber(s[3] or 0)
elseif sw == w - 1 then
  used = tonumber(s[3] or 0)
end
local wend = hi + (w + 1) * Ls
local left = wend - now
if used + n > ks or (cross and pre + n > knext) then
  wait = math.max(1, math.ceil(left))
elseif bg > 0 and used + n > ks - math.floor(bg * ks * left / Ls) then
  -- live first: the reserve (whole calls) shrinks with the time left; wait until it leaves n
  local room = (ks - used - n + 1) * Ls / (bg * ks)
  wait = math.max(1, math.ceil(left - room) + 1)
end
-- burst: no span of Lb + spread may hold more than kb grants
local span = Lb + math.min(a, Lb)
if n > kb then
  wait = math.max(wait, math.ceil(span))
else
  local older = redis.call('LINDEX', KEYS[2], kb - n)
  if older and tonumber(older) > now - span then
    wait = math.max(wait, 1, math.ceil(tonumber(older) + span - now))
  end
end
-- daily
local dw, dused, dpre, dcross
if KEYS[5] then
  local Ld, kd, guard = tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12])
  dw = math.floor(now / Ld)
  local v = redis.call('HMGET', KEYS[5], 'w', 'n', 'p')
  dused, dpre = 0, 0
  if tonumber(v[1]) == dw then
    dused, dpre = tonumber(v[2]), tonumber(v[3] or 0)
  elseif tonumber(v[1]) == dw - 1 then
    dused = tonumber(v[3] or 0)
  end
  dcross = math.floor((now + math.min(guard, Ld / 10)) / Ld) > dw
  if dused + n > kd or (dcross and dpre + n > kd) then
    wait = math.max(wait, 1, math.ceil((dw + 1) * Ld - now))
  end
  if wait == 0 then
    local p, last = dpre, dw + 1
    if dcross then p, last = p + n, dw + 2 end
    redis.call('HSET', KEYS[5], 'w', dw, 'n', dused + n, 'p', p)
    redis.call('PEXPIRE', KEYS[5], math.ceil((last * Ld - now) / 1000) + 1000)
  end
end
if wait > 0 then return {wait} end
local p = pre
if cross then p = pre + n end
redis.call('HSET', KEYS[3], 'w', w, 'n', used + n, 'p', p)
redis.call('PEXPIRE', KEYS[3], math.ceil((wend + Ls - now) / 1000) + 1000)
for _ = 1, n do redis.call('LPUSH', KEYS[2], string.format('%.0f', now)) end
redis.call('LTRIM', KEYS[2], 0, B - 1)
redis.call('PEXPIRE', KEYS[2], math.ceil(span / 1000) + 1000)
return {0, now, w, used + n}
"""

# KEYS: calibration, steady hash. ARGV: grant time (µs), the grant's steady window, our calls
# in it at the grant, Limit, Remaining, Reset (µs), resolution below and above (µs),
# steady length (µs), spread cap (µs), calibration TTL (ms).
# Learns the phase, the limit, the foreign reserve and the arrival spread; returns 1 when the
# phase was (re)learnt from scratch (the steady counts were moved to the new numbering).
_OBSERVE = """
local g, gw, seq = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local lim, rem, r = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local qlo, qhi = tonumber(ARGV[7]), tonumber(ARGV[8])
local Ls, amax = tonumber(ARGV[9]), tonumber(ARGV[10])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local c = redis.call('HMGET', KEYS[1], 'lo', 'hi', 'f', 'fw', 'su', 'sx', 'a', 'first')
local lo, hi = tonumber(c[1]), tonumber(c[2])
local rtt = math.max(0, now - g)
local a = tonumber(c[7])
if a == nil then a = rtt else a = math.max(rtt, a * 0.98 + rtt * 0.02) end
a = math.min(a, amax)
local olo, ohi = g + r - qlo, now + r + qhi
local relearnt = 0
if ohi - olo < Ls / 4 then
  if lo then
    local k = math.floor(((olo + ohi) / 2 - (lo + hi) / 2) / Ls + 0.5)
    olo, ohi = olo - k * Ls, ohi - k * Ls
    if math.max(lo, olo) <= math.min(hi, ohi) then
      lo, hi = math.max(lo, olo), math.min(hi, ohi)
    else
      lo, hi, relearnt = olo, ohi, 1
    end
  else
    local k = math.floor(ohi / Ls)
    lo, hi, relearnt = olo - k * Ls, ohi - k * Ls, 1
  end
end
local fields = {'a', a, 'lim', lim}
if lo then
  table.insert(fields, 'lo'); table.insert(fields, lo)
  table.insert(fields, 'hi'); table.insert(fields, hi)
end
if relearnt == 1 then
  -- the calls counted in the old numbering's current window (which include those
  -- pre-charged from the one before) count in the window the new numbering says is current
  local s = redis.call('HMGET', KEYS[2], 'w', 'n', 'p')
  local oldw = math.floor((now - (tonumber(c[2]) or 0)) / Ls)
  local sw, carried = tonumber(s[1]), 0
  if sw ~= nil and sw >= oldw then carried = tonumber(s[2]) or 0
  elseif sw == oldw - 1 then carried = tonumber(s[3]) or 0 end
  local w = math.floor((now - hi) / Ls)
  redis.call('HSET', KEYS[2], 'w', w, 'n', carried, 'p', 0)
  redis.call('PEXPIRE', KEYS[2], math.ceil((hi + (w + 2) * Ls - now) / 1000) + 1000)
  gw = nil
end
if lo then
  -- the window the observed call was counted in ends at about g..now + r
  local ws = math.floor(((g + now) / 2 + r - (lo + hi) / 2) / Ls + 0.5) - 1
  if ws == gw then
    -- others' calls so far; their window total is estimated as sum(used) / sum(elapsed)
    -- over the window's answers (exact for a client spread evenly, high for a bursty one)
    local used = math.max(0, lim - rem - seq)
    local x = math.min(1, math.max(0, 1 - r / Ls))
    local f, fw, first = tonumber(c[3]), tonumber(c[4]), tonumber(c[8])
    local su, sx = tonumber(c[5]) or 0, tonumber(c[6]) or 0
    if fw == nil then fw, first = ws, 1 end
    if ws > fw then
      f = math.max(su / math.max(sx, 0.2), (f or 0) * 0.5)
      fw, su, sx, first = ws, 0, 0, 0
    end
    if ws == fw then
      su, sx = su + used, sx + x
      if first == 1 then f = su / math.max(sx, 0.5) end
      for _, v in ipairs({'f', f or 0, 'fw', fw, 'fc', used, 'su', su, 'sx', sx,
                          'first', first}) do
        table.insert(fields, v)
      end
    end
  end
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[11]))
return relearnt
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


@dataclass(frozen=True)
class Grant:
    """The limiter's answer to :meth:`RateLimiter.request`: ``wait`` 0.0 when granted (then the
    rest says when and where it was counted, for :meth:`RateLimiter.observe`), else the real
    seconds to wait before the same request can pass."""

    wait: float
    at_us: int = 0  # server time of the grant
    window: int = 0  # the steady window it was counted in
    seq: int = 0  # our calls counted in that window, this one included

    @property
    def granted(self) -> bool:
        return self.wait == 0.0


@dataclass(frozen=True)
class RateHeaders:
    """``RateLimit-Limit/Remaining/Reset`` as Klaviyo sends them (steady window)."""

    limit: int
    remaining: int
    reset: float  # real seconds until the steady window ends
    resolution: float  # the header's grain: 1 s for whole seconds, else its last digit

    @classmethod
    def parse(cls, headers: Mapping[str, str]) -> RateHeaders | None:
        """The three headers, or None when one is missing or unreadable (nothing to learn)."""
        try:
            limit = int(headers["RateLimit-Limit"])
            remaining = int(headers["RateLimit-Remaining"])
            text = headers["RateLimit-Reset"].strip()
            reset = float(text)
        except (KeyError, ValueError, TypeError):
            return None
        if limit < 1 or remaining < 0 or not 0 <= reset <= STEADY_SECONDS * 1000:
            return None
        digits = len(text.partition(".")[2])
        return cls(limit, remaining, reset, 10.0 ** -digits if digits else 1.0)


class RateLimiter:
    """Per (account, operation) windows, calibrated from Klaviyo's answers, decided atomically
    on the Redis server."""

    def __init__(
        self, redis: Redis, *, prefix: str, headroom: float = 0.95, speed: float = 1.0
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
        self._observe = redis.register_script(_OBSERVE)
        self._cooldown = redis.register_script(_COOLDOWN)

    def request(self, account: str, op: Operation, n: int = 1, reserve: float = 0.0) -> Grant:
        """Count ``n`` calls (a granted :class:`Grant`), or count nothing and say how long to
        wait: the cool-down left, or the time until the full window has room.

        ``reserve`` (0 ≤ reserve < 1) makes this a background call (a backfill, an attribute
        drain) that leaves that share of the steady window, shrinking with the time the window
        has left, to live calls (see the module docstring)."""
        if not 0 <= reserve < 1:
            raise ValueError(f"reserve must be in [0, 1), not {reserve}")
        if n < 1 or n > allowed_calls(op.burst, self.headroom) or n > allowed_calls(
                op.steady, self.headroom) or (
                op.daily is not None and n > allowed_calls(op.daily, self.headroom)):
            raise ValueError(f"{op.name}: cannot acquire {n} calls (limits {op.burst}/s, "
                             f"{op.steady}/min at headroom {self.headroom})")
        steady = STEADY_SECONDS * _US / self.speed
        burst = BURST_SECONDS * _US / self.speed
        keys = [self._key(account, op, s) for s in ("cd", "bl", "s", "c")]
        args: list[float] = [n, self.headroom, steady, op.steady, burst, op.burst,
                             ARRIVAL_SPREAD_SECONDS * _US, MAX_ARRIVAL_SPREAD_SECONDS * _US,
                             reserve]
        if op.daily is not None:
            keys.append(self._key(account, op, "d"))
            args += [DAILY_SECONDS * _US / self.speed, allowed_calls(op.daily, self.headroom),
                     BOUNDARY_GUARD_SECONDS * _US / self.speed]
        answer = [int(v) for v in self._acquire(keys=keys, args=args)]
        if answer[0] > 0:
            return Grant(answer[0] / _US)
        return Grant(0.0, at_us=answer[1], window=answer[2], seq=answer[3])

    def acquire(self, account: str, op: Operation, n: int = 1, reserve: float = 0.0) -> float:
        """``request(...).wait``: 0.0 when ``n`` calls were counted, else the seconds to wait."""
        return self.request(account, op, n, reserve).wait

    def observe(self, account: str, op: Operation, grant: Grant, headers: RateHeaders) -> bool:
        """Learn from the answer to a granted call; True when the phase was learnt afresh."""
        if not grant.granted:
            return False
        reset_us = headers.reset * _US
        # a fractional header is rounded (half its grain either way); whole seconds may be
        # rounded up (the sandbox) or down (not documented for Klaviyo): a whole grain
        # either way, so the learnt boundary is safe under both
        grain = headers.resolution * _US
        below = above = grain if headers.resolution >= 1 else grain / 2
        keys = [self._key(account, op, "c"), self._key(account, op, "s")]
        args: list[float] = [
            grant.at_us, grant.window, grant.seq, headers.limit, headers.remaining, reset_us,
            below, above, STEADY_SECONDS * _US / self.speed, MAX_ARRIVAL_SPREAD_SECONDS * _US,
            CALIBRATION_TTL_SECONDS * 1000,
        ]
        return bool(self._observe(keys=keys, args=args))

    def calibration(self, account: str, op: Operation) -> dict[str, float]:
        """What has been learnt of (account, op): ``lo``/``hi`` (a window boundary, server µs),
        ``lim``, ``f`` (foreign reserve), ``a`` (arrival spread, µs)...; empty when nothing."""
        found = self._redis.hgetall(self._key(account, op, "c"))
        return {(k.decode() if isinstance(k, bytes) else str(k)): float(v)
                for k, v in found.items()}

    def cooldown(self, account: str, op: Operation, seconds: float) -> None:
        """Pause (account, op) for every worker for ``seconds`` real seconds; only extends."""
        if seconds <= 0:
            return
        self._cooldown(keys=[self._key(account, op, "cd")], args=[math.ceil(seconds * 1000)])

    def cooldown_remaining(self, account: str, op: Operation) -> float:
        """Real seconds left in the shared pause of (account, op); 0.0 when none."""
        pttl = int(self._redis.pttl(self._key(account, op, "cd")))
        return max(pttl, 0) / 1000

    def _key(self, account: str, op: Operation, suffix: str) -> str:
        return rate_limit_key(self._prefix, account, op.name, suffix)
