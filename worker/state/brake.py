"""The brake on mass removals: a job about to take more than a share of its list off within a
short time holds those removals until a person releases them; enters keep flowing.

An audience definition broken in Lytics empties it, and the product would faithfully empty
the Klaviyo list. :meth:`RemovalBrake.admit` is asked before every batch of removals (flush
and backfill alike): it keeps the people whose removal went out within the last ``window`` in
``{p}:job:{job}:removals-window`` (each once, however often a 429, a 5xx or a profile still
awaited brings their removal back) and refuses a batch that would bring them past ``share`` of
the list as it stood (members now, ``added - removed``, plus those in the window) and past
``minimum`` people. The brake is then *held* (``{p}:job:{job}:brake``: since when, how many
wanted out, of how many): every removal waits, its users parked in ``{p}:job:{job}:
brake-held`` with a pending time ahead, looked at again every :data:`RECHECK_SECONDS`. The
call that engages it sends one scrubbed Sentry warning
(``worker.ops.observability.alert_brake_engaged``); later refusals while held send none.
:meth:`RemovalBrake.release` (``klaviyo-export brake release JOB``) lets them go: held users are
pending again at once, and for one window removals pass without counting against the brake.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from core.jobs import ExportJob
from core.keys import JobKeys
from worker.ops.observability import alert_brake_engaged
from worker.state.counters import ADDED, REMOVED

RECHECK_SECONDS = 30.0  # how often held removals come back to find the brake still held

# KEYS brake, window, counters | ARGV now, share, window_ms, minimum, added, removed, emails
_ADMIT = """
local now = tonumber(ARGV[1])
if redis.call('HEXISTS', KEYS[1], 'held_since') == 1 then return 0 end
if now < tonumber(redis.call('HGET', KEYS[1], 'allow_until') or '0') then return 1 end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[3]))
local fresh, seen = {}, {}
for e in string.gmatch(ARGV[7], '[^\\31]+') do
  if not seen[e] and not redis.call('ZSCORE', KEYS[2], e) then fresh[#fresh + 1] = e end
  seen[e] = true
end
if #fresh == 0 then return 1 end
local sent, n = redis.call('ZCARD', KEYS[2]), #fresh
local members = tonumber(redis.call('HGET', KEYS[3], ARGV[5]) or '0')
  - tonumber(redis.call('HGET', KEYS[3], ARGV[6]) or '0')
local base = math.max(members, 0) + sent
if sent + n > tonumber(ARGV[4]) and sent + n > tonumber(ARGV[2]) * base then
  redis.call('HSET', KEYS[1], 'held_since', now, 'wanted', sent + n, 'of', base)
  return {2, sent + n, base}
end
for i = 1, n, 1000 do
  local args = {}
  for j = i, math.min(i + 999, n) do args[#args + 1] = now; args[#args + 1] = fresh[j] end
  redis.call('ZADD', KEYS[2], unpack(args))
end
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
"""

# KEYS brake-held, pending, inflight | ARGV due_ms, emails (\x1f-separated)
_HOLD = """
for e in string.gmatch(ARGV[2], '[^\\31]+') do
  redis.call('ZREM', KEYS[3], e)
  redis.call('ZADD', KEYS[2], ARGV[1], e)
  redis.call('SADD', KEYS[1], e)
end
return 1
"""


@dataclass(frozen=True)
class BrakePolicy:
    """A job's brake: at most ``share`` of the list (and more than ``minimum`` people) within
    ``window_seconds``; ``share`` 1 turns it off."""

    share: float
    window_seconds: float
    minimum: int

    @property
    def off(self) -> bool:
        return self.share >= 1


class RemovalBrake:
    """One job's brake (module doc)."""

    def __init__(self, client: redis.Redis, keys: JobKeys, policy: BrakePolicy) -> None:
        self.redis = client
        self.keys = keys
        self.policy = policy

    def admit(self, emails: Sequence[str], now_ms: int | None = None) -> bool:
        """May these people's removals go now? False holds the brake (or it was held already);
        the call that engages it sends the one Sentry alert of this engagement. A person counts
        once per window, however often their removal is tried (a 429, a 5xx, a profile still
        awaited bring the same people back), and not at all within a released window."""
        if not emails or self.policy.off:
            return True
        now = int(time.time() * 1000) if now_ms is None else now_ms
        script = self.redis.register_script(_ADMIT)
        window_ms = int(self.policy.window_seconds * 1000)
        args: list[str | int | float] = [now, self.policy.share, window_ms, self.policy.minimum,
                                         ADDED, REMOVED, "\x1f".join(emails)]
        keys = [self.keys.brake, self.keys.removals_window, self.keys.counters]
        found = script(keys=keys, args=args)
        if isinstance(found, list):  # this call engaged the brake: [2, wanted, of]
            alert_brake_engaged(self.keys.job_id, int(found[1]), int(found[2]), self.policy.share)
            return False
        return bool(found)

    def hold(self, emails: Sequence[str], now_ms: int | None = None) -> None:
        """Park claimed users whose removal the brake holds: pending again, due later."""
        if not emails:
            return
        now = int(time.time() * 1000) if now_ms is None else now_ms
        due = now + int(RECHECK_SECONDS * 1000)
        script = self.redis.register_script(_HOLD)
        script(keys=[self.keys.brake_held, self.keys.pending, self.keys.inflight],
               args=[due, "\x1f".join(emails)])

    def release(self, now_ms: int | None = None) -> int:
        """Let the held removals go (and pass removals for one window); return how many."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        held = [m.decode() if isinstance(m, bytes) else str(m)
                for m in self.redis.smembers(self.keys.brake_held)]
        pipe = self.redis.pipeline()
        if held:
            pipe.zadd(self.keys.pending, dict.fromkeys(held, now), xx=True)
        pipe.delete(self.keys.brake_held, self.keys.removals_window)
        pipe.hdel(self.keys.brake, "held_since", "wanted", "of")
        pipe.hset(self.keys.brake, "allow_until",
                  now + int(self.policy.window_seconds * 1000))
        pipe.execute()
        return len(held)

    def state(self) -> dict[str, Any]:
        """``held`` (bool), and while held: since when (epoch s), how many of how many wanted
        out, and how many users wait."""
        raw = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes)
                                                             else v)
               for k, v in self.redis.hgetall(self.keys.brake).items()}
        if "held_since" not in raw:
            return {"held": False}
        return {"held": True, "since": int(raw["held_since"]) / 1000,
                "wanted": int(raw.get("wanted", 0)), "of": int(raw.get("of", 0)),
                "waiting": int(self.redis.scard(self.keys.brake_held)),
                "share": self.policy.share}


def policy_of(job: ExportJob) -> BrakePolicy:
    """A job's brake policy (``removal_brake*`` fields of the jobs file)."""
    return BrakePolicy(share=job.removal_brake, window_seconds=job.removal_brake_window_seconds,
                       minimum=job.removal_brake_min)
