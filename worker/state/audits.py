"""What the audit keeps in Redis: the last audit's summary, and the repair hand-back.

``{p}:job:{job}:audit`` holds the JSON summary of the job's last audit (counts by kind, masked
samples, when, how long), which ``status`` and ``health`` show, with the recent joiners the
incremental check (:mod:`worker.engine.confirm`) found in no audience since.
:meth:`AuditStore.requeue` runs ``lua/requeue.lua``: users put back in the engine's hands to
be subscribed again or removed, with ``added`` kept equal to what the list holds.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import orjson
import redis

from core.keys import JobKeys
from worker.state.codes import ITEM_SEP
from worker.state.desired import _script

REJOIN = "rejoin"  # a member Klaviyo does not show: subscribe again
REMOVE = "remove"  # on the list, in no audience: remove

_REQUEUE = _script("split", "requeue")
_SURVEY = _script("split", "survey")


class AuditStore:
    """One job's last audit and the repair's hand-back to the engine."""

    def __init__(self, client: redis.Redis, keys: JobKeys) -> None:
        self.redis = client
        self.keys = keys

    def save(self, summary: dict[str, Any]) -> None:
        """Keep a full audit's summary; it covers every member, so the incremental check's
        findings so far are cleared, and the next scheduled full audit counts from now."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(self.keys.audit, orjson.dumps(summary))
        pipe.set(self.keys.audit_full_at, float(summary.get("at", time.time())))
        pipe.delete(self.keys.audit_recent_extra)
        pipe.execute()

    def note_extra(self, found: dict[str, str]) -> None:
        """Recent joiners in no audience (email → extra kind), found by the incremental check."""
        if found:
            self.redis.hset(self.keys.audit_recent_extra, mapping=found)  # type: ignore[arg-type]  # redis-py Mapping is invariant

    def recent_extra(self) -> dict[str, int]:
        """Extra kind → people the incremental check found since the last full audit."""
        counts: dict[str, int] = {}
        for kind in self.redis.hvals(self.keys.audit_recent_extra):
            name = kind.decode() if isinstance(kind, bytes) else str(kind)
            counts[name] = counts.get(name, 0) + 1
        return counts

    def last(self) -> dict[str, Any] | None:
        raw = self.redis.get(self.keys.audit)
        if not raw:
            return None
        found: dict[str, Any] = orjson.loads(raw)
        return found

    def survey(self, emails: Sequence[str]) -> list[tuple[bool, str | None, int]]:
        """Per email: in at least one audience, its ``applied`` code (None: never told) and
        when that was set (ms, 0: never); one round trip and one reply for the whole batch."""
        if not emails:
            return []
        raw = self.redis.register_script(_SURVEY)(args=[self.keys.base, ITEM_SEP.join(emails)])
        flat = (raw.decode() if isinstance(raw, bytes) else str(raw)).split(ITEM_SEP)
        return [(flat[i] == "1", flat[i + 1] or None, int(flat[i + 2] or 0))
                for i in range(0, len(flat), 3)]

    def requeue(self, users: Sequence[tuple[str, str]], now_ms: int | None = None) -> int:
        """Queue ``(email, REJOIN | REMOVE)`` users for the next flush; return how many were."""
        if not users:
            return 0
        now = int(time.time() * 1000) if now_ms is None else now_ms
        items = ITEM_SEP.join(f"{email}{ITEM_SEP}{mode}" for email, mode in users)
        script = self.redis.register_script(_REQUEUE)
        return int(script(args=[self.keys.base, now, items]))
