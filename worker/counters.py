"""Per-job counters in one Redis hash: what was added, removed, failed, dead-lettered, omitted.

Hash ``{prefix}:job:{job_id}:counters``; field names are the constants below, so every module
(flush, dead letters, status) counts under the same names. Omissions are one field per reason,
``omitted:<reason>`` (``omitted:no_email``, ``omitted:phone_invalid``...).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from redis import Redis

from worker.klaviyo.errors import redact

ADDED = "added"
REMOVED = "removed"
FAILED = "failed"
DEAD_LETTERED = "dead_lettered"
COUNTS = (ADDED, REMOVED, FAILED, DEAD_LETTERED)
OMITTED_PREFIX = "omitted:"
# people whose removal Klaviyo never confirmed (``drift:remove_unconfirmed``, worker/lua/release)
DRIFT_PREFIX = "drift:"
REMOVE_UNCONFIRMED = DRIFT_PREFIX + "remove_unconfirmed"
# people with an event time moved back to the receiver's clock (``clamped:future_ts``)
CLAMPED_PREFIX = "clamped:"
LAST_ERROR = "last_error"
LAST_ERROR_AT = "last_error_at"
MAX_ERROR_CHARS = 1000


def counters_key(prefix: str, job_id: str) -> str:
    """The Redis hash holding ``job_id``'s counters."""
    return f"{prefix}:job:{job_id}:counters"


@dataclass(frozen=True)
class CounterSnapshot:
    """A job's counters read at one moment."""

    added: int = 0
    removed: int = 0
    failed: int = 0
    dead_lettered: int = 0
    omitted: dict[str, int] = field(default_factory=dict)
    drift: dict[str, int] = field(default_factory=dict)
    clamped: dict[str, int] = field(default_factory=dict)
    last_error: str | None = None
    last_error_at: str | None = None  # ISO 8601, UTC

    @property
    def omitted_total(self) -> int:
        """Users or fields left out, all reasons together."""
        return sum(self.omitted.values())

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, ``omitted_total`` included."""
        return {**asdict(self), "omitted_total": self.omitted_total}


class JobCounters:
    """Atomic increments and a consistent read of one job's counters."""

    def __init__(self, redis: Redis, prefix: str, job_id: str) -> None:
        self._redis = redis
        self.key = counters_key(prefix, job_id)

    def add(self, **deltas: int) -> None:
        """Add to named counters (``added=3, failed=1``) in one round trip."""
        unknown = set(deltas) - set(COUNTS)
        if unknown:
            raise ValueError(f"unknown counter(s): {', '.join(sorted(unknown))}")
        self._incr({name: n for name, n in deltas.items() if n})

    def omitted(self, reason: str, n: int = 1) -> None:
        """Count ``n`` users or fields left out for ``reason`` (``no_email``, ``phone_invalid``)."""
        if not reason:
            raise ValueError("an omission needs a reason")
        self._incr({OMITTED_PREFIX + reason: n})

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


def _by_reason(values: dict[str, str], prefix: str) -> dict[str, int]:
    """The counters named ``<prefix><reason>``, by reason."""
    return {
        k.removeprefix(prefix): int(v) for k, v in sorted(values.items()) if k.startswith(prefix)
    }


def _text(value: str | bytes) -> str:
    """Redis replies as text, whether or not the client decodes responses."""
    return value.decode() if isinstance(value, bytes) else value
