"""A job's lifecycle state in Redis: which list it writes to, and whether it may call Klaviyo.

The state also keeps the list's ``opt_in_process`` as Klaviyo last reported it (read back at
every bootstrap, never assumed) and ``opt_in_note``: why it is not what the job asked for.

States: ``new`` (never bootstrapped), ``ready`` (list resolved), ``failed`` (a
person must fix the job: the selected list does not exist or was deleted),
``auth_failed`` (Klaviyo refused the key: no calls until it works again), and the two an
operator sets: ``paused`` (events are recorded, nothing is sent to Klaviyo; ``resume`` sends
what is pending) and ``stopped`` (nothing is recorded or sent and the job's state is forgotten;
the Klaviyo list stays; ``start`` begins again).

Only an operator leaves ``paused`` or ``stopped``: a bootstrap or a failure found by a flush
that was already running when the job was paused changes the status no more (one Lua step
decides, so no read-then-write race). The state also keeps ``audiences``: the job's audiences
as last exported (JSON), which tells an audience added to the jobs file (backfilled by the next
``start``) from one removed (its members leave the list unless in another audience).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from enum import StrEnum

import redis

from core.keys import JobKeys, jobs_index_key
from core.redact import redact
from worker.ops.observability import alert_job_state

log = logging.getLogger(__name__)


class Status(StrEnum):
    NEW = "new"
    READY = "ready"
    FAILED = "failed"
    AUTH_FAILED = "auth_failed"
    PAUSED = "paused"
    STOPPED = "stopped"


HELD = (Status.PAUSED, Status.STOPPED)  # only an operator's command leaves these

# KEYS[1] state hash | ARGV[1] 1: an operator's change (always applies), then field, value...
_SET = """
local cur = redis.call('HGET', KEYS[1], 'status') or ''
if ARGV[1] ~= '1' and (cur == 'paused' or cur == 'stopped') then return {0, cur} end
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return {1, cur}
"""


@dataclass(frozen=True)
class JobState:
    status: Status
    list_id: str | None
    reason: str
    updated: float
    opt_in_process: str | None = None  # Klaviyo's value: "double_opt_in" or "single_opt_in"
    opt_in_note: str = ""  # set when the list's opt-in is not the one the job asked for
    audiences: tuple[str, ...] | None = None  # as last exported; None: never recorded

    @property
    def can_call(self) -> bool:
        """Only a ready job with a list may send anything to Klaviyo."""
        return self.status is Status.READY and bool(self.list_id)

    @property
    def held(self) -> bool:
        """Paused or stopped by an operator: no call to Klaviyo until they say so."""
        return self.status in HELD


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
            audiences=tuple(json.loads(raw["audiences"])) if raw.get("audiences") else None,
        )

    def status(self) -> Status:
        """The status alone (one HGET: what the hot paths check)."""
        raw = self.redis.hget(self.keys.state, "status")
        return Status(_s(raw)) if raw else Status.NEW

    def _set(self, status: Status, reason: str, list_id: str | None = None, *,
             operator: bool = False) -> bool:
        """Set the status; False when the job is paused or stopped and this is no operator."""
        fields = {"status": status.value, "reason": redact(reason), "updated": f"{time.time():.3f}"}
        if list_id:
            fields["list_id"] = list_id
        args: list[str] = ["1" if operator else "0"]
        for name, value in fields.items():
            args += [name, value]
        changed, before = self.redis.register_script(_SET)(keys=[self.keys.state], args=args)
        self.redis.sadd(jobs_index_key(self.keys.prefix), self.keys.job_id)
        if changed and _s(before) != status.value:
            alert_job_state(self.keys.job_id, status.value, fields["reason"], _s(before))
        return bool(changed)

    def ready(self, list_id: str, reason: str = "") -> None:
        self._set(Status.READY, reason, list_id)

    def pause(self, reason: str = "paused by an operator") -> None:
        """No call to Klaviyo from now on; events are still recorded."""
        self._set(Status.PAUSED, reason, operator=True)

    def resume(self, reason: str = "resumed by an operator") -> None:
        """Back to ``ready`` (``new`` when no list was resolved yet: the next flush bootstraps)."""
        status = Status.READY if self.get().list_id else Status.NEW
        self._set(status, reason, operator=True)

    def stop(self, reason: str = "stopped by an operator") -> None:
        """Nothing recorded or sent from now on; the caller forgets the job's other keys."""
        self._set(Status.STOPPED, reason, operator=True)

    def restart(self) -> None:
        """Leave ``stopped`` (or ``paused``) for ``new``: the list is checked again."""
        self._set(Status.NEW, "started again by an operator", operator=True)

    def set_audiences(self, audiences: tuple[str, ...]) -> None:
        """Remember the audiences the job's desired state now covers."""
        self.redis.hset(self.keys.state, "audiences", json.dumps(list(audiences)))

    def opt_in(self, opt_in_process: str | None, note: str) -> None:
        """Record the list's opt-in process as read back from Klaviyo, and any mismatch."""
        self.redis.hset(self.keys.state, mapping={"opt_in_process": opt_in_process or "",
                                                  "opt_in_note": note})

    def failed(self, reason: str) -> None:
        if self._set(Status.FAILED, reason):  # Sentry hears of it once, as a job-state alert
            log.warning("job %s failed: %s", self.keys.job_id, redact(reason))

    def auth_failed(self, reason: str) -> None:
        if self._set(Status.AUTH_FAILED, reason):
            log.warning("job %s stopped calling Klaviyo: %s", self.keys.job_id, redact(reason))


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def opt_in_words(opt_in_process: str | None) -> str:
    """``double_opt_in`` → "double opt-in"; an unknown or missing value says so."""
    if not opt_in_process:
        return "opt-in process unknown"
    return opt_in_process.replace("_opt_in", " opt-in")
