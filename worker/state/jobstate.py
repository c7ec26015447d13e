"""A job's lifecycle state in Redis: which list it writes to, and whether it may call Klaviyo.

The state also keeps the list's ``opt_in_process`` as Klaviyo last reported it (read back at
every bootstrap, never assumed) and ``opt_in_note``: why it is not what the job asked for.

States: ``new`` (never bootstrapped), ``ready`` (list resolved), ``failed`` (a
person must fix the job: the selected list does not exist or was deleted),
``auth_failed`` (Klaviyo refused the key: no calls until it works again).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from enum import StrEnum

import redis

from core.keys import JobKeys, jobs_index_key
from core.redact import redact

log = logging.getLogger(__name__)


class Status(StrEnum):
    NEW = "new"
    READY = "ready"
    FAILED = "failed"
    AUTH_FAILED = "auth_failed"


@dataclass(frozen=True)
class JobState:
    status: Status
    list_id: str | None
    reason: str
    updated: float
    opt_in_process: str | None = None  # Klaviyo's value: "double_opt_in" or "single_opt_in"
    opt_in_note: str = ""  # set when the list's opt-in is not the one the job asked for

    @property
    def can_call(self) -> bool:
        """Only a ready job with a list may send anything to Klaviyo."""
        return self.status is Status.READY and bool(self.list_id)


class JobStateStore:
    """Read and change one job's state; every change records why and when."""

    def __init__(self, client: redis.Redis, keys: JobKeys) -> None:
        self.redis = client
        self.keys = keys

    def get(self) -> JobState:
        raw = {_s(k): _s(v) for k, v in self.redis.hgetall(self.keys.state).items()}
        return JobState(
            status=Status(raw.get("status", Status.NEW)),
            list_id=raw.get("list_id") or None,
            reason=raw.get("reason", ""),
            updated=float(raw.get("updated", 0) or 0),
            opt_in_process=raw.get("opt_in_process") or None,
            opt_in_note=raw.get("opt_in_note", ""),
        )

    def _set(self, status: Status, reason: str, list_id: str | None = None) -> None:
        fields = {"status": status.value, "reason": redact(reason), "updated": f"{time.time():.3f}"}
        if list_id:
            fields["list_id"] = list_id
        pipe = self.redis.pipeline()
        pipe.hset(self.keys.state, mapping=fields)  # type: ignore[arg-type]  # invariant Mapping
        pipe.sadd(jobs_index_key(self.keys.prefix), self.keys.job_id)
        pipe.execute()

    def ready(self, list_id: str, reason: str = "") -> None:
        self._set(Status.READY, reason, list_id)

    def opt_in(self, opt_in_process: str | None, note: str) -> None:
        """Record the list's opt-in process as read back from Klaviyo, and any mismatch."""
        self.redis.hset(self.keys.state, mapping={"opt_in_process": opt_in_process or "",
                                                  "opt_in_note": note})

    def failed(self, reason: str) -> None:
        self._set(Status.FAILED, reason)
        log.error("job %s failed: %s", self.keys.job_id, redact(reason))  # reaches Sentry

    def auth_failed(self, reason: str) -> None:
        self._set(Status.AUTH_FAILED, reason)
        log.error("job %s stopped calling Klaviyo: %s", self.keys.job_id, redact(reason))


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def opt_in_words(opt_in_process: str | None) -> str:
    """``double_opt_in`` → "double opt-in"; an unknown or missing value says so."""
    if not opt_in_process:
        return "opt-in process unknown"
    return opt_in_process.replace("_opt_in", " opt-in")
