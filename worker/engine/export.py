"""The engine's plain functions, one per task: record, flush, poll, bootstrap.

Tasks in ``worker.tasks.export`` only adapt Celery to these; everything here can be
called (and tested) without a worker.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

from contract import operations as ops
from core import names
from core.events import AudienceEvent
from core.jobs import ExportJob
from core.keys import JobKeys
from core.settings import load_settings
from worker import runtime
from worker.engine import imports, lifecycle
from worker.engine.bootstrap import bootstrap
from worker.engine.flush import FlushContext, Flusher, FlushOutcome
from worker.engine.record import Recorded, record_events
from worker.klaviyo.client import KlaviyoClient
from worker.klaviyo.errors import KlaviyoRetriableError, RateLimited
from worker.limits import retry
from worker.limits.gate import Throttled
from worker.state.counters import JobCounters
from worker.state.deadletter import DeadLetterStore
from worker.state.desired import DesiredState
from worker.state.jobstate import JobStateStore, Status

Scheduler = Callable[[str, float], None]  # (job_id, countdown) → enqueue a flush

log = logging.getLogger(__name__)

_SLOT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
return 1
"""


def _parts(job_id: str) -> tuple[ExportJob, JobKeys, DesiredState]:
    keys = runtime.job_keys(job_id)
    return runtime.job(job_id), keys, DesiredState(runtime.redis_client(), keys)


def klaviyo(job: ExportJob) -> KlaviyoClient:
    """The job's Klaviyo client: each request it sends is charged to the shared limiter."""
    return runtime.klaviyo(job)


def record(job_id: str, events: Sequence[AudienceEvent], schedule: Scheduler) -> Recorded:
    """Record events, then make sure a flush follows: now when a batch is full, else soon."""
    job, keys, state = _parts(job_id)
    if JobStateStore(state.redis, keys).status() is Status.STOPPED:
        return Recorded(0, 0, {})  # a stopped job records nothing: its state was forgotten
    counters = JobCounters(runtime.redis_client(), keys.prefix, job_id)
    result = record_events(job, state, counters, events)
    if result.changed:
        request_flush(job_id, state, schedule)
    return result


def request_flush(job_id: str, state: DesiredState, schedule: Scheduler) -> None:
    settings = load_settings()
    if state.due_count(int(time.time() * 1000)) >= settings.flush_batch_size:
        schedule(job_id, 0.0)
    elif state.redis.set(
        state.keys.flush_timer, 1, nx=True, px=int(settings.flush_interval_seconds * 1000)
    ):
        schedule(job_id, settings.flush_interval_seconds)


def _acquire_slot(state: DesiredState, token: str) -> bool:
    s = load_settings()
    now = int(time.time() * 1000)
    script = state.redis.register_script(_SLOT)
    lease = now + int(s.lease_seconds * 1000)
    return bool(script(keys=[state.keys.flushers], args=[now, lease, s.flush_parallelism, token]))


def ensure_ready(job: ExportJob, store: JobStateStore) -> str | None:
    """The job's list id when it may call Klaviyo; bootstraps a new job first."""
    current = store.get()
    if current.status is Status.NEW:
        return bootstrap(job, store, klaviyo(job))
    return current.list_id if current.can_call else None


def flush(
    job_id: str, schedule: Scheduler, schedule_poll: Callable[[str, str], None]
) -> FlushOutcome:
    """Flush one batch of the job's pending users, and line up what follows."""
    job, keys, state = _parts(job_id)
    store = JobStateStore(state.redis, keys)
    list_id = ensure_ready(job, store)
    if list_id is None:
        return FlushOutcome(stopped=store.get().reason or "job is not ready")
    token = uuid.uuid4().hex
    if not _acquire_slot(state, token):
        return FlushOutcome()
    try:
        if state.due_count(int(time.time() * 1000)) > 2 * load_settings().flush_batch_size:
            schedule(job_id, 0.0)  # widen: another flusher can take the next batch
        outcome = Flusher(flush_context(job, list_id, state, schedule_poll, store=store)).run()
    finally:
        state.redis.zrem(keys.flushers, token)
    _follow_up(job_id, state, outcome, schedule)
    return outcome


def flush_context(
    job: ExportJob,
    list_id: str,
    state: DesiredState,
    schedule_poll: Callable[[str, str], None],
    *,
    store: JobStateStore | None = None,
    queue: str = names.REALTIME,
) -> FlushContext:
    """What one flush of ``job`` needs: a live flush's or a backfill chunk's (``queue``)."""
    s = load_settings()
    return FlushContext(
        job=job,
        list_id=list_id,
        state=state,
        jobstate=store or JobStateStore(state.redis, state.keys),
        client=klaviyo(job),
        deadletters=DeadLetterStore(state.redis, state.keys.prefix, job.id),
        batch_size=ops.BULK_IMPORT.batch_cap if job.force_add else s.flush_batch_size,
        lease_seconds=s.lease_seconds,
        settle_seconds=s.subscribe_settle_seconds,
        queue=queue,
        schedule_poll=lambda kjob_id: schedule_poll(job.id, kjob_id),
    )


def _follow_up(
    job_id: str, state: DesiredState, outcome: FlushOutcome, schedule: Scheduler
) -> None:
    failures_key = state.keys.flush_failures
    if outcome.stopped:
        return
    if outcome.transient:
        failures = int(state.redis.incr(failures_key))
        state.redis.expire(failures_key, retry.FLUSH_FAILURES_TTL_SECONDS)
        schedule(job_id, retry.after_flush_failures(failures))
        return
    if outcome.again_in is not None:
        schedule(job_id, retry.jittered(outcome.again_in))
        return
    state.redis.delete(failures_key)
    if outcome.claimed and state.due_count(int(time.time() * 1000)):
        schedule(job_id, 0.0)
    elif outcome.recheck_in is not None:  # a removal waits for its profile: look again then
        schedule(job_id, retry.jittered(outcome.recheck_in))


@dataclass(frozen=True)
class NextPoll:
    """When to poll an import again; ``attempt`` counts polls Klaviyo could not answer."""

    countdown: float
    attempt: int = 0


def poll_import(job_id: str, kjob_id: str, attempt: int = 0) -> NextPoll | None:
    """Poll one Klaviyo import job; return when to poll again, None when it has finished.

    Our own throttle, a 429 and a 5xx are expected on the way: the poll is put off (the
    limiter's wait, ``Retry-After``, or a capped backoff), logged without a traceback, and
    never raised, so the chain of polls goes on without waiting for beat's sweep.
    """
    job, keys, state = _parts(job_id)
    letters = DeadLetterStore(state.redis, keys.prefix, job_id)
    s = load_settings()
    status = JobStateStore(state.redis, keys).status()
    if status is Status.STOPPED:
        return None  # its state was forgotten: nothing left to follow
    if status is Status.PAUSED:  # nothing goes to Klaviyo, not even a poll: look again later
        return _defer(state, kjob_id, NextPoll(retry.jittered(max(s.poll_interval_seconds, 1.0))))
    try:
        result = imports.poll(state, klaviyo(job), letters, kjob_id, s.lease_seconds)
    except Throttled as exc:
        log.info("import %s of job %s: poll throttled, next in %.1fs", kjob_id, job_id, exc.wait)
        return _defer(state, kjob_id, NextPoll(exc.wait, attempt))
    except KlaviyoRetriableError as exc:
        wait = retry.poll_again(attempt, exc.retry_after, s.poll_interval_seconds)
        kind = "rate limited (429)" if isinstance(exc, RateLimited) else f"failed ({exc})"
        log.warning("import %s of job %s: poll %s, next in %.1fs", kjob_id, job_id, kind, wait)
        return _defer(state, kjob_id, NextPoll(wait, attempt + 1))
    return None if result.finished else NextPoll(s.poll_interval_seconds)


def _defer(state: DesiredState, kjob_id: str, nxt: NextPoll) -> NextPoll:
    """Tell beat's sweep this import is being polled, so it does not start a second chain."""
    due = time.time() + nxt.countdown
    state.redis.zadd(imports.outstanding_key(state), {kjob_id: due}, xx=True)
    return nxt


def run_bootstrap(job_id: str) -> str | None:
    job, keys, state = _parts(job_id)
    return bootstrap(job, JobStateStore(state.redis, keys), klaviyo(job))


def sweep(job_id: str, schedule: Scheduler, schedule_poll: Callable[[str, str], None]) -> int:
    """The safety net: flush users nobody is flushing, and poll imports nobody is polling;
    and the jobs file's audiences followed (a removed audience's members re-checked)."""
    job, keys, state = _parts(job_id)
    store = JobStateStore(state.redis, keys)
    if store.status() is Status.STOPPED:
        return 0
    lifecycle.follow_audiences(job, store, schedule)
    now = int(time.time() * 1000)
    stale = state.redis.zcount(keys.inflight, "-inf", now)
    if state.due_count(now) or stale:
        schedule(job_id, 0.0)
    cutoff = time.time() - 10 * load_settings().poll_interval_seconds
    raw = cast(
        "list[bytes]", state.redis.zrangebyscore(imports.outstanding_key(state), "-inf", cutoff)
    )
    forgotten = [k.decode() for k in raw]
    for kjob_id in forgotten:
        state.redis.zadd(imports.outstanding_key(state), {kjob_id: time.time()})
        schedule_poll(job_id, kjob_id)
    return int(stale)
