"""Desired state in Redis: what Klaviyo *should* show for each user, and who is not there yet.

Three Lua scripts keep every change atomic:

- ``record``: per (user, audience) keep the newest event by the source's own
  timestamp (a stale or duplicate event changes nothing; on a tie, exit wins), keep
  the newest mapped fields, and mark the user pending when anything changed.
- ``claim``: move up to N pending users into ``inflight`` under a lease, skipping
  users another flusher holds or whose subscription is still settling; expired
  leases (a worker that died) go back to pending first.
- ``release``: record what Klaviyo was told (``applied``), count transitions once,
  and hand back users to retry.

Timestamps are 20-digit zero-padded nanosecond strings: Lua numbers are doubles
and would lose nanoseconds, strings compare exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import redis

from worker.keys import JobKeys

# Every script takes its items as one \x1f-separated string: one argument instead of
# thousands keeps redis-py's per-argument encoding out of the hot path.
_SPLIT = """
local function split(s)
  local out, start = {}, 1
  if s == '' then return out end
  while true do
    local i = string.find(s, '\\31', start, true)
    if not i then out[#out + 1] = string.sub(s, start) return out end
    out[#out + 1] = string.sub(s, start, i - 1)
    start = i + 1
  end
end
"""

_RECORD = (
    _SPLIT
    + """
local base, now = ARGV[1], ARGV[2]
local items = split(ARGV[3])
local changed = 0
for i = 1, #items, 5 do
  local email, aud, act, ts, fjson = items[i], items[i+1], items[i+2], items[i+3], items[i+4]
  local ukey = base .. ':u:' .. email
  local dirty = false
  if act ~= 'C' then
    local cur = redis.call('HGET', ukey, aud)
    local newer = true
    if cur then
      local cts = string.sub(cur, 3)
      if ts < cts then newer = false
      elseif ts == cts then newer = (act == 'X' and string.sub(cur, 1, 1) == 'E') end
    end
    if newer then
      redis.call('HSET', ukey, aud, act .. ':' .. ts)
      dirty = (not cur) or string.sub(cur, 1, 1) ~= act
    end
  end
  local member = act == 'E'
  if act == 'C' then
    for _, v in ipairs(redis.call('HVALS', ukey)) do
      if string.sub(v, 1, 1) == 'E' then member = true end
    end
  end
  if fjson ~= '' and member then
    local fkey = base .. ':f:' .. email
    local cur = redis.call('GET', fkey)
    if (not cur) or string.sub(cur, 1, 20) < ts then
      if (not cur) or string.sub(cur, 22) ~= fjson then dirty = true end
      redis.call('SET', fkey, ts .. '|' .. fjson)
    end
  end
  if dirty then
    redis.call('ZADD', base .. ':pending', 'NX', now, email)
    changed = changed + 1
  end
end
return changed
"""
)

# Appended to both claim scripts: what a claimed user should be, read in the same atomic step.
_DESCRIBE = (
    _SPLIT
    + """
local function describe(base, e, out)
  local member = 0
  for _, v in ipairs(redis.call('HVALS', base .. ':u:' .. e)) do
    if string.sub(v, 1, 1) == 'E' then member = 1 end
  end
  out[#out + 1] = e
  out[#out + 1] = member
  out[#out + 1] = redis.call('GET', base .. ':f:' .. e) or ''
  out[#out + 1] = redis.call('HGET', base .. ':applied', e) or ''
end
"""
)

_CLAIM = (
    _DESCRIBE
    + """
local base, now, lease = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local max_n, scan_n = tonumber(ARGV[4]), tonumber(ARGV[5])
local pending, inflight, settling = base .. ':pending', base .. ':inflight', base .. ':settling'
for _, e in ipairs(redis.call('ZRANGEBYSCORE', inflight, '-inf', now, 'LIMIT', 0, 10000)) do
  redis.call('ZREM', inflight, e)
  redis.call('ZADD', pending, 'NX', now, e)
end
redis.call('ZREMRANGEBYSCORE', settling, '-inf', now)
local out, blocked_until = {}, 0
for _, e in ipairs(redis.call('ZRANGE', pending, 0, scan_n - 1)) do
  local held = tonumber(redis.call('ZSCORE', inflight, e) or '0')
  local settle = tonumber(redis.call('ZSCORE', settling, e) or '0')
  local until_ms = math.max(held, settle)
  if until_ms > now then
    if blocked_until == 0 or until_ms < blocked_until then blocked_until = until_ms end
  else
    redis.call('ZREM', pending, e)
    redis.call('ZADD', inflight, lease, e)
    describe(base, e, out)
    if #out >= 4 * max_n then break end
  end
end
return {table.concat(out, '\\31'), tostring(blocked_until)}
"""
)

_CLAIM_USERS = (
    _DESCRIBE
    + """
local base, now, lease = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local pending, inflight, settling = base .. ':pending', base .. ':inflight', base .. ':settling'
local out = {}
for _, e in ipairs(split(ARGV[4])) do
  local held = tonumber(redis.call('ZSCORE', inflight, e) or '0')
  local settle = tonumber(redis.call('ZSCORE', settling, e) or '0')
  if redis.call('ZSCORE', pending, e) and held <= now and settle <= now then
    redis.call('ZREM', pending, e)
    redis.call('ZADD', inflight, lease, e)
    describe(base, e, out)
  end
end
return table.concat(out, '\\31')
"""
)

_RELEASE = (
    _SPLIT
    + """
local base, now, settle_until = ARGV[1], ARGV[2], ARGV[3]
local applied, counters = base .. ':applied', base .. ':counters'
local items = split(ARGV[4])
local added, removed = 0, 0
for i = 1, #items, 2 do
  local email, val = items[i], items[i+1]
  redis.call('ZREM', base .. ':inflight', email)
  if val == 'retry' then
    redis.call('ZADD', base .. ':pending', 'NX', now, email)
  elseif val ~= '' then
    local prev = redis.call('HGET', applied, email)
    local was_in = prev and string.sub(prev, 1, 2) == 'in'
    if string.sub(val, 1, 3) == 'out' then
      if val == 'out' and prev ~= 'out' and prev ~= 'out0' then removed = removed + 1 end
      redis.call('HSET', applied, email, val)
    else
      if not was_in then added = added + 1 end
      redis.call('HSET', applied, email, val)
      if tonumber(settle_until) > 0 then
        redis.call('ZADD', base .. ':settling', settle_until, email)
      end
    end
  end
end
if added > 0 then redis.call('HINCRBY', counters, 'added', added) end
if removed > 0 then redis.call('HINCRBY', counters, 'removed', removed) end
return 1
"""
)

SEP = "\x1f"  # between items of a script's single list argument
_EXTEND = (
    _SPLIT
    + """
for _, e in ipairs(split(ARGV[3])) do
  redis.call('ZADD', ARGV[1] .. ':inflight', 'XX', ARGV[2], e)
end
return 1
"""
)

RETRY = "retry"  # put the user back in pending
FORGET = ""  # drop the claim only (dead-lettered)


def pad_ts(ts_ns: int) -> str:
    """Nanoseconds as a fixed-width string that sorts like the number."""
    return f"{ts_ns:020d}"


@dataclass(frozen=True)
class Mark:
    """One event, reduced to what the desired state needs."""

    email: str
    audience: str
    action: str  # "E", "X" or "C"
    ts_ns: int
    attributes: dict[str, Any] | None  # Klaviyo attributes without email; None: no fields


@dataclass(frozen=True)
class Desired:
    """A claimed user's current desired state and what Klaviyo was last told."""

    email: str
    member: bool  # in at least one selected audience
    fields_ts: str  # "" when no fields are recorded
    attributes: dict[str, Any]
    applied: str | None  # "in|<fields_ts>", "out", "out0" or None

    @property
    def applied_in(self) -> bool:
        return bool(self.applied and self.applied.startswith("in"))

    @property
    def applied_fields_ts(self) -> str:
        return self.applied.partition("|")[2] if self.applied_in and self.applied else ""


class DesiredState:
    """The scripts above, bound to one job's keys."""

    def __init__(self, client: redis.Redis, keys: JobKeys) -> None:
        self.redis = client
        self.keys = keys
        self._record = client.register_script(_RECORD)
        self._claim = client.register_script(_CLAIM)
        self._release = client.register_script(_RELEASE)
        self._claim_users = client.register_script(_CLAIM_USERS)
        self._extend = client.register_script(_EXTEND)

    def record(self, marks: Sequence[Mark], now_ms: int) -> int:
        """Apply ``marks`` atomically; return how many users became pending."""
        if not marks:
            return 0
        items: list[str] = []
        for m in marks:
            fields = (
                orjson.dumps(m.attributes, option=orjson.OPT_SORT_KEYS).decode()
                if m.attributes
                else ""
            )
            items += [m.email, m.audience, m.action, pad_ts(m.ts_ns), fields]
        return int(self._record(args=[self.keys.base, now_ms, SEP.join(items)]))

    def claim(self, now_ms: int, lease_ms: int, max_n: int) -> tuple[list[Desired], int]:
        """Claim up to ``max_n`` users with their desired state, and when a skipped one frees up."""
        described, blocked = self._claim(
            args=[self.keys.base, now_ms, now_ms + lease_ms, max_n, max_n * 2]
        )
        return _described(described), int(blocked)

    def claim_users(self, emails: Sequence[str], now_ms: int, lease_ms: int) -> list[Desired]:
        """Claim exactly these users when they are pending and nobody holds them (backfill)."""
        if not emails:
            return []
        return _described(
            self._claim_users(args=[self.keys.base, now_ms, now_ms + lease_ms, SEP.join(emails)])
        )

    def read(self, emails: Sequence[str]) -> list[Desired]:
        """The desired state of users without claiming them (status, tests)."""
        pipe = self.redis.pipeline(transaction=False)
        for email in emails:
            pipe.hvals(self.keys.user(email))
            pipe.get(self.keys.fields(email))
        out = pipe.execute()
        applied = self.redis.hmget(self.keys.applied, list(emails)) if emails else []
        return [
            _desired(email, out[2 * i], out[2 * i + 1], applied[i])
            for i, email in enumerate(emails)
        ]

    def release(
        self, outcomes: Sequence[tuple[str, str]], now_ms: int, settle_until_ms: int = 0
    ) -> None:
        """Record each user's outcome: ``in|<ts>``, ``out``, ``out0``, RETRY or FORGET."""
        if outcomes:
            items = SEP.join(f"{email}{SEP}{value}" for email, value in outcomes)
            self._release(args=[self.keys.base, now_ms, settle_until_ms, items])

    def extend(self, emails: Sequence[str], until_ms: int) -> None:
        """Keep holding users whose asynchronous Klaviyo job is still running."""
        if emails:
            self._extend(args=[self.keys.base, until_ms, SEP.join(emails)])

    def pending_count(self) -> int:
        return int(self.redis.zcard(self.keys.pending))

    def inflight_count(self) -> int:
        return int(self.redis.zcard(self.keys.inflight))


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")


def _desired(
    email: str,
    states: Sequence[bytes | str],
    fields: bytes | str | None,
    applied: bytes | str | None,
) -> Desired:
    member = any(_text(s).startswith("E") for s in states)
    raw = _text(fields)
    fields_ts, _, body = raw.partition("|")
    attributes = orjson.loads(body) if body else {}
    return Desired(email, member, fields_ts, attributes, _text(applied) or None)


def _described(answer: bytes | str) -> list[Desired]:
    """Decode the claim scripts' answer: email, member, fields, applied per user."""
    flat = _text(answer).split(SEP) if answer else []
    return [
        _desired(
            flat[i],
            ["E"] if flat[i + 1] == "1" else [],
            flat[i + 2] or None,
            flat[i + 3] or None,
        )
        for i in range(0, len(flat), 4)
    ]
