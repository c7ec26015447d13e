"""A job's lifecycle state in Redis: which list it writes to, and whether it may call Klaviyo.

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

    def failed(self, reason: str) -> None:
        self._set(Status.FAILED, reason)
        log.error("job %s failed: %s", self.keys.job_id, redact(reason))  # reaches Sentry

    def auth_failed(self, reason: str) -> None:
        self._set(Status.AUTH_FAILED, reason)
        log.error("job %s stopped calling Klaviyo: %s", self.keys.job_id, redact(reason))


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
