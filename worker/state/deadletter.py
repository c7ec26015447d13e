"""Dead letters: users the engine gave up on, kept per job for inspection and replay.

List ``{prefix}:job:{job_id}:dlq`` holds one JSON :class:`DeadLetter` per entry, newest first,
capped at ``cap`` entries (the oldest fall off). The stored email is kept in full because a
replay needs it; everything that prints a letter (``repr``, ``str``, :meth:`DeadLetter.masked`)
masks it.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from redis import Redis

from core.keys import counters_key, dlq_key
from core.redact import mask_email, redact
from worker.state.counters import DEAD_LETTERED, FAILED, JobCounters, person_digest

DEFAULT_CAP = 100_000
MAX_DETAIL = 2000


class DeadLetter(BaseModel):
    """One user the engine could not deliver, and why."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    email: str
    reason: str  # short and stable, e.g. "invalid_request", "poison", "retries_exhausted"
    source: str  # where it failed, e.g. "klaviyo:bulk_subscribe_profiles" or "poison"
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    event: dict[str, Any] | None = None  # the AudienceEvent wire dict, for replay
    detail: str = ""

    @field_validator("detail")
    @classmethod
    def _short_detail(cls, value: str) -> str:
        """Error bodies can be huge; a bounded excerpt is enough to diagnose."""
        return value[:MAX_DETAIL]

    def masked(self) -> dict[str, Any]:
        """A loggable dict: email masked, detail redacted, the event without its profile."""
        event = None
        if self.event is not None:
            event = {k: v for k, v in self.event.items() if k != "profile"}
        return {"email": mask_email(self.email), "reason": self.reason, "source": self.source,
                "at": self.at.isoformat(), "event": event, "detail": redact(self.detail)}

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        """What ``repr`` and ``str`` show: the masked view, never the address."""
        return list(self.masked().items())


def event_letters(
    events: Sequence[Any], *, reason: str, source: str, detail: str = ""
) -> builtins.list[DeadLetter]:
    """One letter per event of a message that could not be recorded, each holding its event.

    The event is kept exactly as it came (un-normalised) so that ``dlq replay`` can record it
    again through the normal path; an entry that is not even a dict is kept in ``detail``.
    A message without events still leaves one letter, so that nothing vanishes unseen.
    """
    letters = []
    for raw in events:
        if isinstance(raw, dict):
            profile = raw.get("profile")
            email = profile.get("email") if isinstance(profile, dict) else None
            letters.append(DeadLetter(email=str(email or ""), reason=reason, source=source,
                                      event=raw, detail=detail))
        else:
            letters.append(DeadLetter(email="", reason=reason, source=source,
                                      detail=f"{detail} (not an event: {raw!r})".strip()))
    return letters or [DeadLetter(email="", reason=reason, source=source, detail=detail)]


class DeadLetterStore:
    """One job's capped dead-letter list in Redis."""

    def __init__(self, redis: Redis, prefix: str, job_id: str, cap: int = DEFAULT_CAP) -> None:
        if cap < 1:
            raise ValueError(f"cap must be at least 1, not {cap}")
        self._redis = redis
        self.key = dlq_key(prefix, job_id)
        self._counters = counters_key(prefix, job_id)
        self._people = JobCounters(redis, prefix, job_id)
        self.cap = cap

    def add(self, letters: Sequence[DeadLetter]) -> int:
        """Store ``letters`` (trimming to the cap), count them; return the store's size after."""
        if not letters:
            return self.size()
        pipe = self._redis.pipeline()
        pipe.lpush(self.key, *(letter.model_dump_json() for letter in letters))
        pipe.ltrim(self.key, 0, self.cap - 1)
        pipe.hincrby(self._counters, DEAD_LETTERED, len(letters))
        pushed = pipe.execute()[0]
        self._people.count_people({FAILED: _people(letters)})
        return min(int(pushed), self.cap)

    def list(self, limit: int = 50) -> builtins.list[DeadLetter]:
        """The newest ``limit`` letters, newest first; the store is unchanged."""
        if limit < 1:
            return []
        raw: builtins.list[Any] = self._redis.lrange(self.key, 0, limit - 1)
        return [DeadLetter.model_validate_json(item) for item in raw]

    def size(self) -> int:
        """How many letters are stored."""
        return int(self._redis.llen(self.key))

    def take_all(self) -> builtins.list[DeadLetter]:
        """Atomically empty the store and return its letters, oldest first (replay order).

        If an entry cannot be read, every entry is put back and the error is raised: a replay
        takes all letters or none.
        """
        pipe = self._redis.pipeline()  # MULTI/EXEC: nobody adds between the read and the delete
        pipe.lrange(self.key, 0, -1)
        pipe.delete(self.key)
        raw: builtins.list[Any] = pipe.execute()[0]
        try:
            letters = [DeadLetter.model_validate_json(item) for item in reversed(raw)]
        except ValidationError:
            if raw:
                self._redis.rpush(self.key, *raw)
            raise
        self._people.forget_people({FAILED: _people(letters)})  # back in the engine's hands
        return letters

    def put_back(self, letters: Sequence[DeadLetter]) -> None:
        """Return letters taken by :meth:`take_all` (oldest first) to the end they came from.

        Not counted again as letters: they were counted when they were first dead-lettered;
        their people are failed again, as they were before the take.
        """
        if letters:
            self._redis.rpush(self.key, *(letter.model_dump_json() for letter in reversed(letters)))
            self._people.count_people({FAILED: _people(letters)})

    def purge(self) -> int:
        """Delete every letter; return how many there were."""
        pipe = self._redis.pipeline()
        pipe.llen(self.key)
        pipe.delete(self.key)
        return int(pipe.execute()[0])


def _people(letters: Iterable[DeadLetter]) -> set[str]:
    """The people behind ``letters``, as ``failed`` counts them (one per address)."""
    return {person_digest(f"email:{letter.email.strip().lower()}")
            for letter in letters if letter.email.strip()}
