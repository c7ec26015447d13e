"""Desired state in Redis: what Klaviyo *should* show for each user, and who is not there yet.

Lua scripts (``worker/state/lua/``) keep every change atomic:

- ``record``: per (user, audience) keep the newest event by the source's own
  timestamp (a stale or duplicate event changes nothing; on a tie, exit wins), keep
  the newest mapped fields, and mark the user pending when anything changed.
- ``claim``: move up to N pending users into ``inflight`` under a lease, skipping
  users another flusher holds or whose subscription is still settling; expired
  leases (a worker that died) go back to pending first.
- ``record_claim``: a backfill chunk's ``record`` and the claim of its own users in one
  step, so they go from their event straight to a lease without a trip through pending.
- ``release``: record what Klaviyo was told (``applied``), count transitions once,
  and hand back users to retry.
- ``defer``: hand back users whose removal waits for their profile, due at their own time
  (a pending score in the future), remembering when the wait began (``removal-waits``).
- ``applied``: set users' ``applied`` codes while they stay claimed (``try`` before a send).
- ``confirm``: users the list shows (recent joiners of a double opt-in list): awaiting ones
  become members, and one who left before confirming is pending again, to be removed.

What Klaviyo was last told about a user (the ``applied`` hash) and the event codes are
owned by :mod:`worker.state.codes`, which hands them to the Lua scripts as a header.

Timestamps are 20-digit zero-padded nanosecond strings: Lua numbers are doubles
and would lose nanoseconds, strings compare exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import redis

from core.keys import JobKeys
from worker.state import codes
from worker.state.codes import APPLIED_IN, APPLIED_TRY, APPLIED_WAIT, OUT

# The scripts live in worker/state/lua/. Every script takes its items as one \x1f-separated string:
# one argument instead of thousands keeps redis-py's per-argument encoding off the hot path.
_LUA = Path(__file__).with_name("lua")


def _script(*names: str) -> str:
    """Lua files from worker/state/lua/ after the codes' header, shared helpers first."""
    files = [(_LUA / f"{name}.lua").read_text(encoding="utf-8") for name in names]
    return "\n".join([codes.lua_header(), *files])


_RECORD = _script("split", "mark", "record")
_RECORD_CLAIM = _script("split", "mark", "describe", "record_claim")
_CLAIM = _script("split", "describe", "claim")
_RELEASE = _script("split", "release")
_EXTEND = _script("split", "extend")
_DEFER = _script("split", "defer")
_APPLIED = _script("split", "applied")
_CONFIRM = _script("split", "confirm")

SEP = codes.ITEM_SEP  # between items of a script's single list argument


def pad_ts(ts_ns: int) -> str:
    """Nanoseconds as a fixed-width string that sorts like the number."""
    return f"{ts_ns:020d}"


class Mark(NamedTuple):
    """One event, reduced to what the desired state needs (a tuple: a million are made)."""

    email: str
    audience: str
    action: str  # an event code: codes.ENTER, EXIT or CHANGE
    ts_ns: int
    attributes: dict[str, Any] | None  # Klaviyo attributes without email; None: no fields


class Desired(NamedTuple):
    """A claimed user's current desired state and what Klaviyo was last told."""

    email: str
    member: bool  # in at least one selected audience
    fields_ts: str  # "" when no fields are recorded
    attributes: dict[str, Any]
    applied: str | None  # an ``applied`` code (module docstring) or None: never told

    @property
    def applied_in(self) -> bool:
        """Klaviyo accepted a subscribe (or force-add) for this user, who is on the list."""
        return bool(self.applied and self.applied.startswith(APPLIED_IN + codes.FIELDS_SEP))

    @property
    def awaiting(self) -> bool:
        """Subscribed to a double opt-in list, not confirmed yet (never subscribe them again:
        Klaviyo would send another confirmation email)."""
        return bool(self.applied and self.applied.startswith(APPLIED_WAIT + codes.FIELDS_SEP))

    @property
    def accepted(self) -> bool:
        """Klaviyo accepted a subscribe (or force-add): on the list, or awaiting confirmation."""
        return self.applied_in or self.awaiting

    @property
    def applied_out(self) -> bool:
        """Klaviyo was last told to remove this user, or there was nobody to remove."""
        return bool(self.applied and self.applied.startswith(OUT))

    @property
    def may_be_present(self) -> bool:
        """Klaviyo was (or may have been) told to subscribe: its profile may yet appear."""
        return self.accepted or bool(
            self.applied and self.applied.startswith(APPLIED_TRY + codes.FIELDS_SEP))

    @property
    def applied_fields_ts(self) -> str:
        if not (self.accepted and self.applied):
            return ""
        return self.applied.partition(codes.FIELDS_SEP)[2]


class DesiredState:
    """The scripts above, bound to one job's keys."""

    def __init__(self, client: redis.Redis, keys: JobKeys) -> None:
        self.redis = client
        self.keys = keys
        self._record = client.register_script(_RECORD)
        self._claim = client.register_script(_CLAIM)
        self._release = client.register_script(_RELEASE)
        self._extend = client.register_script(_EXTEND)
        self._record_claim = client.register_script(_RECORD_CLAIM)
        self._defer = client.register_script(_DEFER)
        self._applied = client.register_script(_APPLIED)
        self._confirm = client.register_script(_CONFIRM)

    def record(self, marks: Sequence[Mark], now_ms: int) -> int:
        """Apply ``marks`` atomically; return how many users became pending."""
        if not marks:
            return 0
        return int(self._record(args=[self.keys.base, now_ms, _mark_items(marks)]))

    def record_and_claim(
        self, marks: Sequence[Mark], now_ms: int, lease_ms: int
    ) -> tuple[int, list[Desired]]:
        """``record``, then claim the marks' own users, atomically (backfill chunks).

        Returns how many users changed, and those of the marks' users that need a flush
        (changed now, pending before, or held under a lease that expired) and that nobody
        holds and are not settling, claimed under a lease with their state; the others stay
        pending for the flusher that holds them.
        """
        if not marks:
            return 0, []
        described, changed = self._record_claim(
            args=[self.keys.base, now_ms, now_ms + lease_ms, _mark_items(marks)]
        )
        return int(changed), _described(described)

    def claim(self, now_ms: int, lease_ms: int, max_n: int) -> tuple[list[Desired], int]:
        """Claim up to ``max_n`` users with their desired state, and when a skipped one frees up."""
        described, blocked = self._claim(
            args=[self.keys.base, now_ms, now_ms + lease_ms, max_n, max_n * 2]
        )
        return _described(described), int(blocked)

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
        """Record each user's outcome: ``in|<ts>``, ``wait|<ts>``, ``out``, ``out0``, ``out?``,
        RETRY or FORGET (``out`` of a ``wait`` user is recorded ``outw``)."""
        if outcomes:
            items = SEP.join(f"{email}{SEP}{value}" for email, value in outcomes)
            self._release(args=[self.keys.base, now_ms, settle_until_ms, items])

    def set_applied(self, values: Sequence[tuple[str, str | None]]) -> None:
        """Set users' ``applied`` codes (None deletes) without releasing their claim."""
        if values:
            items = SEP.join(f"{email}{SEP}{value or ''}" for email, value in values)
            self._applied(args=[self.keys.base, items])

    def confirm(self, emails: Sequence[str], now_ms: int) -> tuple[int, int, int]:
        """Users the list shows: (awaiting ones confirmed, ``try`` ones found on it, ones who
        left before confirming and are pending again to be removed)."""
        if not emails:
            return 0, 0, 0
        confirmed, recovered, rejoined = self._confirm(
            args=[self.keys.base, now_ms, SEP.join(emails)])
        return int(confirmed), int(recovered), int(rejoined)

    def defer(self, waits: Sequence[tuple[str, int, int]]) -> None:
        """Release (email, due_ms, waiting_since_ms) users to pending, each due at its time."""
        if waits:
            items = SEP.join(f"{email}{SEP}{due}{SEP}{since}" for email, due, since in waits)
            self._defer(args=[self.keys.base, items])

    def removal_waits(self, emails: Sequence[str]) -> dict[str, int]:
        """Since when (ms) each of these users' removal has been waiting for its profile."""
        if not emails:
            return {}
        raw = self.redis.hmget(self.keys.removal_waits, list(emails))
        return {e: int(v) for e, v in zip(emails, raw, strict=True) if v}

    def waiting_count(self) -> int:
        """Users whose removal is waiting for their Klaviyo profile to appear."""
        return int(self.redis.hlen(self.keys.removal_waits))

    def drift_count(self) -> int:
        """Users whose removal was never confirmed (no profile appeared in time)."""
        return int(self.redis.zcard(self.keys.drift))

    def due_count(self, now_ms: int) -> int:
        """Pending users a flush may take now (not a check deferred to later)."""
        return int(self.redis.zcount(self.keys.pending, "-inf", now_ms))

    def next_due_ms(self, now_ms: int) -> int | None:
        """When the soonest check deferred to later (a pending score after ``now_ms``) is due."""
        first = self.redis.zrangebyscore(self.keys.pending, f"({now_ms}", "+inf", start=0,
                                         num=1, withscores=True)
        return int(first[0][1]) if first else None

    def extend(self, emails: Sequence[str], until_ms: int) -> None:
        """Keep holding users whose asynchronous Klaviyo job is still running."""
        if emails:
            self._extend(args=[self.keys.base, until_ms, SEP.join(emails)])

    def pending_count(self) -> int:
        return int(self.redis.zcard(self.keys.pending))

    def inflight_count(self) -> int:
        return int(self.redis.zcard(self.keys.inflight))


def _mark_items(marks: Sequence[Mark]) -> str:
    """The record scripts' one argument: email, audience, action, timestamp, fields per mark."""
    items: list[str] = []
    for m in marks:
        fields = (
            orjson.dumps(m.attributes, option=orjson.OPT_SORT_KEYS).decode()
            if m.attributes
            else ""
        )
        items += [m.email, m.audience, m.action, pad_ts(m.ts_ns), fields]
    return SEP.join(items)


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")


def _desired(
    email: str,
    states: Sequence[bytes | str],
    fields: bytes | str | None,
    applied: bytes | str | None,
) -> Desired:
    member = any(_text(s).startswith(codes.ENTER) for s in states)
    raw = _text(fields)
    fields_ts, _, body = raw.partition(codes.FIELDS_SEP)
    attributes = orjson.loads(body) if body else {}
    return Desired(email, member, fields_ts, attributes, _text(applied) or None)


def _described(answer: bytes | str) -> list[Desired]:
    """Decode the claim scripts' answer: email, member, fields, applied per user."""
    flat = _text(answer).split(SEP) if answer else []
    out: list[Desired] = []
    for i in range(0, len(flat), 4):
        fields_ts, _, body = flat[i + 2].partition(codes.FIELDS_SEP)
        out.append(
            Desired(
                flat[i],
                flat[i + 1] == "1",
                fields_ts,
                orjson.loads(body) if body else {},
                flat[i + 3] or None,
            )
        )
    return out


def _described_fields(answer: bytes | str) -> list[Desired]:
    """Decode ``attrs_claim``'s answer (email, stored fields per member) as members."""
    flat = _text(answer).split(SEP) if answer else []
    out: list[Desired] = []
    for i in range(0, len(flat), 2):
        fields_ts, _, body = flat[i + 1].partition(codes.FIELDS_SEP)
        out.append(Desired(flat[i], True, fields_ts, orjson.loads(body) if body else {}, None))
    return out
