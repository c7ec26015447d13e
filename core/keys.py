"""Every Redis key layout, in one place (docs/architecture.md tables them).

Everything lives under the deployment's ``KEY_PREFIX`` (``p`` below):

- ``p:job:{job}:...``: one export job (:class:`JobKeys`): desired state, counters, dead
  letters, job state, flush bookkeeping. The Lua scripts of ``worker/state/lua/`` are passed
  :attr:`JobKeys.base` and append the same suffixes (``:u:``, ``:pending``, ``:applied``...);
  a test checks they use no suffix this module does not define.
- ``p:bf:{job}:...``: backfill runs (:class:`RunKeys`, :func:`current_run_key`).
- ``p:acct:{account}:ids``, ``p:acct:{account}:optouts...``, ``p:rl:{account}:{op}:...``: per
  Klaviyo account (fingerprint).
- ``p:jobs``, ``p:health``, ``p:heartbeat:{queue}``, ``p:deliveries:{task}:{n}``: the fleet.
- ``p:celery:...``, ``p:redbeat:...``: Celery's broker and results, RedBeat's schedule.
"""

from __future__ import annotations

from dataclasses import dataclass

# suffixes under a job's base that the Lua scripts build themselves from the base
USER = ":u:"
FIELDS = ":f:"
PENDING = ":pending"
INFLIGHT = ":inflight"
SETTLING = ":settling"
APPLIED = ":applied"
APPLIED_AT = ":applied-at"
REMOVAL_WAITS = ":removal-waits"
DRIFT = ":drift"
COUNTERS = ":counters"
ATTRS_PENDING = ":attrs-pending"
ATTRS_INFLIGHT = ":attrs-inflight"
LUA_SUFFIXES = (
    USER, FIELDS, PENDING, INFLIGHT, SETTLING, APPLIED, REMOVAL_WAITS, DRIFT, COUNTERS,
    ATTRS_PENDING, ATTRS_INFLIGHT, APPLIED_AT,
)


def job_base(prefix: str, job_id: str) -> str:
    """``{prefix}:job:{job_id}``: every key of one job starts so."""
    return f"{prefix}:job:{job_id}"


@dataclass(frozen=True)
class JobKeys:
    """Every key that belongs to one export job."""

    prefix: str
    job_id: str

    @property
    def base(self) -> str:
        return job_base(self.prefix, self.job_id)

    @property
    def state(self) -> str:
        return f"{self.base}:state"

    @property
    def pending(self) -> str:
        return self.base + PENDING

    @property
    def inflight(self) -> str:
        return self.base + INFLIGHT

    @property
    def settling(self) -> str:
        return self.base + SETTLING

    @property
    def applied(self) -> str:
        return self.base + APPLIED

    @property
    def applied_at(self) -> str:
        """Hash: email → when (ms) the ``applied`` code was last set by a release."""
        return self.base + APPLIED_AT

    @property
    def removal_waits(self) -> str:
        return self.base + REMOVAL_WAITS

    @property
    def drift(self) -> str:
        return self.base + DRIFT

    @property
    def counters(self) -> str:
        """Hash of the job's counters (``worker.state.counters``)."""
        return self.base + COUNTERS

    @property
    def people(self) -> str:
        """``people + field`` is the set of digests of people counted under ``field``."""
        return f"{self.base}:people:"

    @property
    def dlq(self) -> str:
        """List of the job's dead letters, newest first."""
        return f"{self.base}:dlq"

    @property
    def flushers(self) -> str:
        return f"{self.base}:flushers"

    @property
    def flush_timer(self) -> str:
        return f"{self.base}:flush-timer"

    def flush_due(self, queue: str) -> str:
        """When the job's deferred flush on ``queue`` is due (ms), while one is lined up."""
        return f"{self.base}:flush-due:{queue}"

    @property
    def flush_failures(self) -> str:
        """Flushes failed in a row (a 5xx, a timeout): how far the next one backs off."""
        return f"{self.base}:flush-failures"

    @property
    def attrs_pending(self) -> str:
        """Zset of members whose mapped fields wait for an attribute bulk import (score: ms)."""
        return self.base + ATTRS_PENDING

    @property
    def attrs_inflight(self) -> str:
        """Zset of members whose fields an attribute drain is sending (score: lease expiry)."""
        return self.base + ATTRS_INFLIGHT

    @property
    def attrs_timer(self) -> str:
        """Set while an attribute drain is scheduled for a partial import."""
        return f"{self.base}:attrs-timer"

    @property
    def poll_timer(self) -> str:
        """Set while the job's next round of import polls is scheduled."""
        return f"{self.base}:poll-timer"

    @property
    def bootstrap_lock(self) -> str:
        return f"{self.base}:bootstrap-lock"

    @property
    def confirm_watermark(self) -> str:
        """String: the newest ``joined_group_at`` the confirmation pass has read (ISO 8601)."""
        return f"{self.base}:confirm-watermark"

    @property
    def confirm_due(self) -> str:
        """String with a TTL: a confirmation pass ran (or is queued) within the interval."""
        return f"{self.base}:confirm-due"

    @property
    def audit_incremental_due(self) -> str:
        """String with a TTL: an incremental audit pass (a job with no confirmations to look
        for) ran or is queued within ``AUDIT_INCREMENTAL_SECONDS``."""
        return f"{self.base}:audit-incremental-due"

    @property
    def import_jobs(self) -> str:
        """Zset of the Klaviyo bulk import jobs still being polled."""
        return f"{self.base}:kjobs"

    @property
    def conflicts(self) -> str:
        """Hash email → JSON ``{identifier: value}``: identifiers Klaviyo said belong to another
        profile (409 ``duplicate_profile``), left out of what is sent for this user."""
        return f"{self.base}:conflicts"

    def user(self, email: str) -> str:
        return self.base + USER + email

    @property
    def users_pattern(self) -> str:
        """SCAN pattern of every user's desired-state hash (the audit reads them all)."""
        return self.base + USER + "*"

    @property
    def audit(self) -> str:
        """String: JSON summary of the last audit of the job's list (``status``, ``health``)."""
        return f"{self.base}:audit"

    @property
    def audit_full_at(self) -> str:
        """String: epoch seconds of the job's last full audit (or when beat first scheduled
        one); beat's next full audit is due ``audit_every_hours`` later."""
        return f"{self.base}:audit-full-at"

    @property
    def audit_lock(self) -> str:
        """String with a TTL: a scheduled full audit of the job is running (one at a time)."""
        return f"{self.base}:audit-lock"

    @property
    def audit_recent_extra(self) -> str:
        """Hash: email → extra kind, recent joiners the incremental check found in no
        audience since the last full audit (which clears it)."""
        return f"{self.base}:audit-recent-extra"

    @property
    def brake(self) -> str:
        """Hash: the removal brake (``held_since``, ``wanted``, ``of``, ``allow_until``)."""
        return f"{self.base}:brake"

    @property
    def brake_held(self) -> str:
        """Set: users whose removal the brake holds (pending again, due later)."""
        return f"{self.base}:brake-held"

    @property
    def removals_window(self) -> str:
        """Zset: people whose removal went out lately (member: email, score: first try, ms),
        each once however often it was tried; what the brake measures."""
        return f"{self.base}:removals-window"

    @property
    def every_key_pattern(self) -> str:
        """SCAN pattern of every key of the job (``stop`` forgets them, ``state`` kept)."""
        return self.base + ":*"

    @property
    def audiences_lock(self) -> str:
        """Held while a removed audience's members are taken out of the desired state."""
        return f"{self.base}:audiences-lock"

    @property
    def runs(self) -> str:
        """List of the job's finished runs (backfills, audits), JSON, newest first, capped."""
        return f"{self.base}:runs"

    def fields(self, email: str) -> str:
        return self.base + FIELDS + email

    def import_job(self, klaviyo_job_id: str) -> str:
        return f"{self.base}:kjob:{klaviyo_job_id}"


def counters_key(prefix: str, job_id: str) -> str:
    """The Redis hash holding ``job_id``'s counters."""
    return JobKeys(prefix, job_id).counters


def people_key_base(prefix: str, job_id: str) -> str:
    """``people_key_base(...) + field`` is the set of people counted under ``field``."""
    return JobKeys(prefix, job_id).people


def dlq_key(prefix: str, job_id: str) -> str:
    """The Redis list holding ``job_id``'s dead letters."""
    return JobKeys(prefix, job_id).dlq


def jobs_index_key(prefix: str) -> str:
    """Set of job ids that have state in this Redis."""
    return f"{prefix}:jobs"


# --- backfill runs -------------------------------------------------------------------------


def current_run_key(prefix: str, job_id: str) -> str:
    """The job's unfinished backfill run, which a rerun resumes."""
    return f"{prefix}:bf:{job_id}:current"


def last_run_key(prefix: str, job_id: str) -> str:
    """The job's newest backfill run (``status`` shows it)."""
    return f"{prefix}:bf:{job_id}:last"


@dataclass(frozen=True)
class RunKeys:
    """The keys of one backfill run: its hash, chunks and the sets that count things once."""

    prefix: str
    job_id: str
    run_id: str

    @property
    def run(self) -> str:
        """Hash: progress counters, the producer's checkpoint, status."""
        return f"{self.prefix}:bf:{self.job_id}:{self.run_id}"

    def chunk(self, n: int) -> str:
        return f"{self.run}:chunk:{n}"

    @property
    def results(self) -> str:
        """Hash: chunk number → its committed result (a redelivery gets it back)."""
        return f"{self.run}:results"

    @property
    def done(self) -> str:
        """Set of the chunks counted."""
        return f"{self.run}:done"

    @property
    def segments(self) -> str:
        """Set of the segments counted."""
        return f"{self.run}:segs"


# --- per Klaviyo account ---------------------------------------------------------------------


def account_ids_key(prefix: str, account: str) -> str:
    """Email → Klaviyo profile id, per account (removals need ids)."""
    return f"{prefix}:acct:{account}:ids"


def optouts_meta_key(prefix: str, account: str) -> str:
    """Hash: the account's opt-out mirror, its generation in force, the fill being built
    (cursors) and the suppression timestamps the incremental refresh reads from."""
    return f"{prefix}:acct:{account}:optouts"


def optouts_key(prefix: str, account: str, generation: int) -> str:
    """Hash: one generation of the account's opt-out mirror (person digest, or digest and
    list id → ``unsubscribed`` or ``suppressed``); a full rebuild writes the next one."""
    return f"{prefix}:acct:{account}:optouts:{generation}"


def optouts_lock_key(prefix: str, account: str) -> str:
    """One worker at a time fills or refreshes an account's opt-out mirror."""
    return f"{prefix}:acct:{account}:optouts-lock"


def rate_limit_key(prefix: str, account: str, operation: str, window: str) -> str:
    """The limiter's key for one (account, operation): ``cd`` the cool-down, ``bl`` the burst
    log, ``s``/``d`` the steady and daily windows, ``c`` what was learnt of the account's
    steady window (phase, limit, foreign share)."""
    return f"{prefix}:rl:{account}:{operation}:{window}"


# --- the fleet ---------------------------------------------------------------------------------


def heartbeat_key(prefix: str, queue: str) -> str:
    """When a worker consuming ``queue`` last ran a heartbeat (epoch seconds)."""
    return f"{prefix}:heartbeat:{queue}"


def health_key(prefix: str) -> str:
    """Hash: component → JSON ``{ok, detail, at}`` written by the health task."""
    return f"{prefix}:health"


def deliveries_key(prefix: str, task_id: str, retries: int) -> str:
    """How often one message (one attempt of a task) was delivered: the poison guard."""
    return f"{prefix}:deliveries:{task_id}:{retries}"


def celery_prefix(prefix: str) -> str:
    """Kombu's ``global_keyprefix``: Celery's broker and result keys start so."""
    return f"{prefix}:celery:"


def broker_queue_key(prefix: str, queue: str) -> str:
    """The Redis list kombu keeps for ``queue`` (priority 0)."""
    return celery_prefix(prefix) + queue


def broker_queue_keys(prefix: str, queue: str) -> list[str]:
    """The Redis lists kombu keeps for ``queue``: one per priority step (0 is the bare name)."""
    base = broker_queue_key(prefix, queue)
    return [base] + [f"{base}\x06\x16{step}" for step in (3, 6, 9)]


def redbeat_prefix(prefix: str) -> str:
    """RedBeat's ``redbeat_key_prefix``: the beat schedule and the single-beat lock."""
    return f"{prefix}:redbeat:"


def replication_fence_key(prefix: str) -> str:
    """A write of the checking connection's own before ``WAIT`` (``core.redisconn``)."""
    return f"{prefix}:fence:replication"


def rate_limit_fence_key(prefix: str) -> str:
    """After a change of Redis master: the limiter grants nothing until this key expires."""
    return f"{prefix}:rl:failover"


def rate_limit_epoch_key(prefix: str) -> str:
    """The ``run_id`` of the Redis master the limiter's windows were counted on."""
    return f"{prefix}:rl:epoch"


# --- metrics -----------------------------------------------------------------------------------


def call_stats_key(prefix: str, account: str, operation: str) -> str:
    """Hash of one (account, operation)'s Klaviyo calls: ``calls``, ``status:<code>``,
    ``le:<bucket>`` (latency, not cumulative), ``sum`` (seconds): ``core.metrics`` reads it."""
    return f"{prefix}:metrics:calls:{account}:{operation}"


def call_stats_index_key(prefix: str) -> str:
    """Set of ``account|operation`` pairs that have a ``call_stats_key``."""
    return f"{prefix}:metrics:calls"
