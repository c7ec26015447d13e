"""Per-job counters in one Redis hash: what was added, removed, failed, dead-lettered, omitted.

Hash ``{prefix}:job:{job_id}:counters``; field names are the constants below, so every module
(flush, dead letters, status) counts under the same names. Omissions are one field per reason,
``omitted:<reason>`` (``omitted:no_email``, ``omitted:invalid_email``...), and fields left out
of an exported profile one per reason, ``dropped:<reason>`` (``dropped:phone_invalid``).

Counters count people, not events: ``omitted:*``, ``dropped:*`` and ``failed`` are counted
through :meth:`JobCounters.count_people`, which keeps a set of person digests per field
(``{prefix}:job:{job_id}:people:<field>``) and adds one only for a person the set did not hold,
so a body sent fifty times counts its people once. ``failed`` is the people currently given up
on (dead-lettered); a replay takes them back out. ``dead_lettered`` counts letters written.

``added``, ``removed`` and ``awaiting_confirmation`` count each person's transitions once, in
the Lua scripts that record them (``lua/release.lua``, ``lua/confirm.lua``): ``added`` when a
person is on the list, ``awaiting_confirmation`` while a person subscribed to a double opt-in
list has not confirmed. So ``added - removed`` is the list's members, and the people exported
are ``added - removed + awaiting_confirmation``. Someone who leaves before confirming leaves
``awaiting_confirmation`` and is never counted in ``removed`` (they were never added).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from redis import Redis

from core.keys import counters_key, people_key_base
from core.redact import redact

ADDED = "added"
REMOVED = "removed"
# people subscribed to a double opt-in list who have not confirmed yet (lua/release.lua and
# lua/confirm.lua move them: to ``added`` when the list shows them, out when they leave first)
AWAITING = "awaiting_confirmation"
FAILED = "failed"
DEAD_LETTERED = "dead_lettered"
COUNTS = (ADDED, REMOVED, AWAITING, FAILED, DEAD_LETTERED)
OMITTED_PREFIX = "omitted:"
DROPPED_PREFIX = "dropped:"
# people whose removal Klaviyo never confirmed (``drift:remove_unconfirmed``, lua/release.lua)
DRIFT_PREFIX = "drift:"
REMOVE_UNCONFIRMED = DRIFT_PREFIX + "remove_unconfirmed"
# people with an event time moved back to the receiver's clock (``clamped:future_ts``)
CLAMPED_PREFIX = "clamped:"
LAST_ERROR = "last_error"
LAST_ERROR_AT = "last_error_at"
MAX_ERROR_CHARS = 1000


def person_digest(identity: str) -> str:
    """A short, stable digest of a person's identity: the sets never hold an address."""
    return hashlib.blake2b(identity.encode(), digest_size=8).hexdigest()


# KEYS[1] counters hash | ARGV[1] people-set key base, ARGV[2] +1 or -1, then field, digest, ...
_COUNT_PEOPLE = """
local verb = ARGV[2] == '1' and 'SADD' or 'SREM'
local changed = 0
for i = 3, #ARGV, 2 do
  if redis.call(verb, ARGV[1] .. ARGV[i], ARGV[i + 1]) == 1 then
    redis.call('HINCRBY', KEYS[1], ARGV[i], tonumber(ARGV[2]))
    changed = changed + 1
  end
end
return changed
"""


@dataclass(frozen=True)
class CounterSnapshot:
    """A job's counters read at one moment."""

    added: int = 0
    removed: int = 0
    awaiting_confirmation: int = 0  # subscribed to a double opt-in list, not confirmed yet
    failed: int = 0
    dead_lettered: int = 0
    omitted: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)  # people with a field left out
    drift: dict[str, int] = field(default_factory=dict)
    clamped: dict[str, int] = field(default_factory=dict)
    last_error: str | None = None
    last_error_at: str | None = None  # ISO 8601, UTC

    @property
    def omitted_total(self) -> int:
        """People left out, all reasons together."""
        return sum(self.omitted.values())

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, ``omitted_total`` included."""
        return {**asdict(self), "omitted_total": self.omitted_total}


class JobCounters:
    """Atomic increments and a consistent read of one job's counters."""

    def __init__(self, redis: Redis, prefix: str, job_id: str) -> None:
        self._redis = redis
        self.key = counters_key(prefix, job_id)
        self._people = people_key_base(prefix, job_id)

    def add(self, **deltas: int) -> None:
        """Add to named counters (``added=3, failed=1``) in one round trip."""
        unknown = set(deltas) - set(COUNTS)
        if unknown:
            raise ValueError(f"unknown counter(s): {', '.join(sorted(unknown))}")
        self._incr({name: n for name, n in deltas.items() if n})

    def omitted(self, people: Mapping[str, Iterable[str]]) -> int:
        """Count people left out, by reason (``no_email``...) → person digests; once each."""
        return self.count_people({OMITTED_PREFIX + _reason(r): d for r, d in people.items()})

    def dropped(self, people: Mapping[str, Iterable[str]]) -> int:
        """Count people exported with a field left out, by reason (``phone_invalid``...)."""
        return self.count_people({DROPPED_PREFIX + _reason(r): d for r, d in people.items()})

    def count_people(self, people: Mapping[str, Iterable[str]]) -> int:
        """Add each person digest to its field once; return how many were new."""
        return self._people_script(people, +1)

    def forget_people(self, people: Mapping[str, Iterable[str]]) -> int:
        """Take people back out of their fields (a replayed dead letter); return how many."""
        return self._people_script(people, -1)

    def _people_script(self, people: Mapping[str, Iterable[str]], sign: int) -> int:
        args: list[str | int] = [self._people, sign]
        for name, digests in people.items():
            for digest in digests:
                args += [name, digest]
        if len(args) == 2:
            return 0
        return int(self._redis.register_script(_COUNT_PEOPLE)(keys=[self.key], args=args))

    def set_last_error(self, message: str) -> None:
        """Remember the latest error (emails masked, length capped) and when it happened."""
        now = datetime.now(UTC).isoformat(timespec="seconds")
        # cut before redacting too: redact's regex is slow on very long text
        text = redact(message[: 4 * MAX_ERROR_CHARS])[:MAX_ERROR_CHARS]
        self._redis.hset(self.key, mapping={LAST_ERROR: text, LAST_ERROR_AT: now})

    def snapshot(self) -> CounterSnapshot:
        """All counters as one consistent read."""
        raw: dict[Any, Any] = self._redis.hgetall(self.key)
        values = {_text(k): _text(v) for k, v in raw.items()}
        return CounterSnapshot(
            **{name: int(values.get(name, 0)) for name in COUNTS},
            omitted=_by_reason(values, OMITTED_PREFIX),
            dropped=_by_reason(values, DROPPED_PREFIX),
            drift=_by_reason(values, DRIFT_PREFIX),
            clamped=_by_reason(values, CLAMPED_PREFIX),
            last_error=values.get(LAST_ERROR),
            last_error_at=values.get(LAST_ERROR_AT),
        )

    def _incr(self, deltas: dict[str, int]) -> None:
        if not deltas:
            return
        pipe = self._redis.pipeline()
        for name, n in deltas.items():
            pipe.hincrby(self.key, name, n)
        pipe.execute()


def _reason(reason: str) -> str:
    if not reason:
        raise ValueError("an omission needs a reason")
    return reason


def _by_reason(values: dict[str, str], prefix: str) -> dict[str, int]:
    return {k.removeprefix(prefix): int(v) for k, v in sorted(values.items())
            if k.startswith(prefix) and int(v)}


def _text(value: str | bytes) -> str:
    """Redis replies as text, whether or not the client decodes responses."""
    return value.decode() if isinstance(value, bytes) else value
