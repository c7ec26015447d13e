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

from contract import operations as ops
from core import names
from core.events import AudienceEvent
from core.jobs import ExportJob
from core.keys import JobKeys, current_run_key
from core.settings import load_settings
from worker import runtime
from worker.engine import attributes, audit, confirm, imports, lifecycle
from worker.engine.bootstrap import BootstrapBusy, bootstrap
from worker.engine.flush import FlushContext, Flusher, FlushOutcome
from worker.engine.record import Recorded, record_events
from worker.klaviyo.client import KlaviyoClient
from worker.klaviyo.errors import KlaviyoRetriableError, RateLimited
from worker.limits import retry
from worker.limits.gate import Throttled
from worker.state import locks
from worker.state.brake import RemovalBrake, policy_of
from worker.state.counters import JobCounters
from worker.state.deadletter import DeadLetterStore
from worker.state.desired import DesiredState
from worker.state.jobstate import JobStateStore, Status

Scheduler = Callable[[str, float], None]  # (job_id, countdown) → enqueue a flush
# (job_id, countdown) → enqueue an attribute drain (``export.flush_attributes``)
AttributesScheduler = Callable[[str, float], None]


def no_drain(_job_id: str, _countdown: float) -> None:
    """No attribute drain wanted (tests of flushes alone)."""

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


def klaviyo(job: ExportJob, *, background: bool = False) -> KlaviyoClient:
    """The job's Klaviyo client: each request it sends is charged to the shared limiter
    (``background``: leaving live flushes their reserve)."""
    return runtime.klaviyo(job, background=background)


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
    job_id: str,
    schedule: Scheduler,
    schedule_poll: Callable[[str, str], None],
    schedule_attributes: AttributesScheduler = no_drain,
    *,
    background: bool = False,
) -> FlushOutcome:
    """Flush one batch of the job's pending users, and line up what follows.

    A ``background`` flush (asked for by a backfill chunk: the users a throttled chunk left
    pending) is charged as the backfill is, leaving live flushes their reserve."""
    job, keys, state = _parts(job_id)
    store = JobStateStore(state.redis, keys)
    try:
        list_id = ensure_ready(job, store)
    except BootstrapBusy:  # another worker is making the list: look again shortly
        outcome = FlushOutcome(again_in=retry.BOOTSTRAP_BUSY_SECONDS)
        _follow_up(job_id, state, outcome, schedule)
        return outcome
    if list_id is None:
        return FlushOutcome(stopped=store.get().reason or "job is not ready")
    token = uuid.uuid4().hex
    if not _acquire_slot(state, token):
        return FlushOutcome()
    try:
        context = flush_context(job, list_id, state, schedule_poll, store=store,
                                schedule_attributes=schedule_attributes,
                                queue=names.BACKFILL if background else names.REALTIME)
        outcome = Flusher(context).run()
    finally:
        state.redis.zrem(keys.flushers, token)
    _follow_up(job_id, state, outcome, schedule)
    # opportunistic: a flush of a double opt-in job is a moment to look for confirmations too
    outcome.confirm = context.awaits_confirmation and confirm.due(
        state, load_settings().confirm_interval_seconds)
    return outcome


def flush_context(
    job: ExportJob,
    list_id: str,
    state: DesiredState,
    schedule_poll: Callable[[str, str], None],
    *,
    store: JobStateStore | None = None,
    queue: str = names.REALTIME,
    schedule_attributes: AttributesScheduler = no_drain,
) -> FlushContext:
    """What one flush of ``job`` needs: a live flush's or a backfill chunk's (``queue``)."""
    s = load_settings()
    store = store or JobStateStore(state.redis, state.keys)
    return FlushContext(
        job=job,
        list_id=list_id,
        state=state,
        jobstate=store,
        client=klaviyo(job, background=queue == names.BACKFILL),
        deadletters=DeadLetterStore(state.redis, state.keys.prefix, job.id),
        batch_size=ops.BULK_IMPORT.batch_cap if job.force_add else s.flush_batch_size,
        lease_seconds=s.lease_seconds,
        settle_seconds=s.subscribe_settle_seconds,
        queue=queue,
        schedule_poll=lambda kjob_id: schedule_poll(job.id, kjob_id),
        awaits_confirmation=confirm.awaits_confirmation(job, store.get()),
        schedule_attributes=lambda countdown: schedule_attributes(job.id, countdown),
        attribute_wait_seconds=s.attribute_wait_seconds,
        brake=RemovalBrake(state.redis, state.keys, policy_of(job)),
    )


def flush_attributes(
    job_id: str, schedule_attributes: AttributesScheduler, schedule_poll: Callable[[str, str], None]
) -> attributes.DrainOutcome:
    """Send one import of queued mapped fields (up to 10,000 profiles); line up the next."""
    job, keys, state = _parts(job_id)
    state.redis.delete(keys.attrs_timer)
    store = JobStateStore(state.redis, keys)
    if not store.get().can_call:
        return attributes.DrainOutcome(stopped=store.get().reason or "job is not ready")
    s = load_settings()
    drain = attributes.Drain(
        state=state,
        client=klaviyo(job, background=True),  # fields wait; memberships do not
        letters=DeadLetterStore(state.redis, keys.prefix, job_id),
        lease_seconds=s.lease_seconds,
        schedule_poll=lambda kjob_id: schedule_poll(job_id, kjob_id),
    )
    outcome = drain.run(wait_seconds=s.attribute_wait_seconds)
    if outcome.stopped:
        store.auth_failed(f"Klaviyo refused the key: {outcome.stopped}")
        return outcome
    if outcome.again_in is not None:
        schedule_attributes(job_id, retry.jittered(outcome.again_in))
    else:
        def again(countdown: float) -> None:
            schedule_attributes(job_id, countdown)

        attributes.request(state, again, s.attribute_wait_seconds)
    return outcome


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
    now = int(time.time() * 1000)
    due = state.due_count(now) if outcome.claimed else 0
    if due:
        schedule(job_id, 0.0)
        if due > 2 * load_settings().flush_batch_size:
            # widen: another flusher takes the next batch. Only after a flush that went
            # through: one widened ahead of a throttled flush claimed, was refused and widened
            # again, some 30 flushes a second that sent nothing (the live-first test's backfill)
            schedule(job_id, 0.0)
        return
    # a removal waiting for its profile, this flush's or another's: look again then. Another
    # flush's wait may have been covered by the flush lined up for this one (worker/state/
    # timers.py), which claimed other users and so would line up nothing for it
    later = state.next_due_ms(now)
    waits = [w for w in (outcome.recheck_in, None if later is None else (later - now) / 1000)
             if w is not None]
    if waits:
        schedule(job_id, retry.jittered(max(0.0, min(waits))))


@dataclass(frozen=True)
class NextPoll:
    """When to poll the job's imports again; ``attempt`` counts rounds Klaviyo could not
    answer in a row."""

    countdown: float
    attempt: int = 0


PollScheduler = Callable[[str, float, int], None]  # (job_id, countdown, attempt) → a round
POLL_TIMER_GRACE_SECONDS = 60.0  # a round lined up but not run by then is lost: sweep starts one


def request_polls(
    job_id: str, state: DesiredState, schedule: PollScheduler, countdown: float, attempt: int = 0
) -> bool:
    """Line up the job's next round of import polls, unless one is already lined up."""
    ttl = int((countdown + POLL_TIMER_GRACE_SECONDS) * 1000)
    if state.redis.set(state.keys.poll_timer, 1, nx=True, px=ttl):
        schedule(job_id, countdown, attempt)
        return True
    return False


def poll_imports(job_id: str, schedule: PollScheduler, attempt: int = 0) -> NextPoll | None:
    """Poll every outstanding Klaviyo import of the job (one list call), line up the next
    round while any runs; None when none is left.

    Our own throttle, a 429 and a 5xx are expected on the way: the round is put off (the
    limiter's wait, ``Retry-After``, or a capped backoff), logged without a traceback, and
    never raised; the users the imports hold keep their lease for the whole wait.
    """
    job, keys, state = _parts(job_id)
    letters = DeadLetterStore(state.redis, keys.prefix, job_id)
    s = load_settings()
    status = JobStateStore(state.redis, keys).status()
    if status is Status.STOPPED:
        return None  # its state was forgotten: nothing left to follow
    nxt: NextPoll | None
    if status is Status.PAUSED:  # nothing goes to Klaviyo, not even a poll: look again later
        nxt = NextPoll(retry.jittered(max(s.poll_interval_seconds, 1.0)), attempt)
        imports.hold(state, None, nxt.countdown + s.lease_seconds)  # keep their users held
        state.redis.delete(keys.poll_timer)
        request_polls(job_id, state, schedule, nxt.countdown, nxt.attempt)
        return nxt
    try:
        result = imports.poll_all(state, klaviyo(job), letters, s.lease_seconds)
        nxt = NextPoll(s.poll_interval_seconds) if result.running else None
    except Throttled as exc:
        log.info("imports of job %s: poll throttled, next in %.1fs", job_id, exc.wait)
        nxt = NextPoll(exc.wait, attempt)
    except KlaviyoRetriableError as exc:
        wait = retry.poll_again(attempt, exc.retry_after, s.poll_interval_seconds)
        kind = "rate limited (429)" if isinstance(exc, RateLimited) else f"failed ({exc})"
        log.warning("imports of job %s: poll %s, next in %.1fs", job_id, kind, wait)
        nxt = NextPoll(wait, attempt + 1)
    if nxt is not None and nxt.countdown > s.poll_interval_seconds:
        imports.hold(state, None, nxt.countdown + s.lease_seconds)  # put off: keep them held
    state.redis.delete(keys.poll_timer)
    if nxt is None and state.redis.zcard(imports.outstanding_key(state)):
        nxt = NextPoll(s.poll_interval_seconds)  # registered while this round ran
    if nxt is not None:
        request_polls(job_id, state, schedule, nxt.countdown, nxt.attempt)
    return nxt


def run_bootstrap(job_id: str) -> str | None:
    """The job's list id; None while another worker is making it (its flush follows)."""
    job, keys, state = _parts(job_id)
    try:
        return bootstrap(job, JobStateStore(state.redis, keys), klaviyo(job))
    except BootstrapBusy:
        return None


def confirm_wanted(job_id: str) -> bool:
    """Beat: does this job's list need a pass over its recent joiners now (ready, due at its
    :func:`confirm.cadence`)? Every job has one: the incremental audit; double opt-in lists
    also find confirmations there, more often."""
    job, keys, state = _parts(job_id)
    current = JobStateStore(state.redis, keys).get()
    if not (current.can_call and current.list_id):
        return False
    settings = load_settings()
    pace = confirm.cadence(job, current, state, settings)
    return confirm.due(state, pace.seconds, tick_seconds=settings.joiners_period,
                       incremental=not pace.confirms)


def run_confirm(job_id: str, schedule: Scheduler) -> confirm.ConfirmOutcome | None:
    """One pass over the job's recent joiners (confirmations, extra drift); None: no list. The
    incremental audit alone goes through the background client: live flushes go first."""
    job, keys, state = _parts(job_id)
    store = JobStateStore(state.redis, keys)
    current = store.get()
    if not (current.can_call and current.list_id):
        return None
    confirms = confirm.needs_pass(job, current, state)
    outcome = confirm.check_pass(job, state, store, klaviyo(job, background=not confirms),
                                 current.list_id, confirms=confirms)
    if outcome.rejoined:  # people who confirmed after leaving: a flush removes them
        schedule(job_id, 0.0)
    if outcome.confirmed or outcome.rejoined:
        log.info("job %s: %d confirmed, %d confirmed after leaving (removed again), %d page(s)",
                 job_id, outcome.confirmed, outcome.rejoined, outcome.pages)
    if outcome.extra:
        log.warning("job %s: %d recent joiner(s) of the list in no audience (extra drift)",
                    job_id, outcome.extra)
    return outcome


def full_audit_wanted(job_id: str, now: float | None = None) -> bool:
    """Beat: is the job's scheduled full audit due (``audit_every_hours`` since the last full
    audit; the first one that long after beat first looked)? Never while one runs."""
    job, keys, state = _parts(job_id)
    if job.audit_every_hours <= 0 or state.redis.exists(keys.audit_lock):
        return False
    current = JobStateStore(state.redis, keys).get()
    if not (current.can_call and current.list_id):
        return False
    now = time.time() if now is None else now
    if state.redis.set(keys.audit_full_at, now, nx=True):
        return False
    raw = state.redis.get(keys.audit_full_at)
    last = float(raw.decode() if isinstance(raw, bytes) else str(raw))
    return now - last >= job.audit_every_hours * 3600


def run_full_audit(job_id: str) -> audit.Audit | None:
    """A scheduled full audit (no repair), through the job's limited client, its summary
    kept for ``status`` and ``health``; None: not due, or one is already running."""
    if not full_audit_wanted(job_id):
        return None
    job, keys, state = _parts(job_id)
    with locks.held(state.redis, keys.audit_lock) as mine:
        current = JobStateStore(state.redis, keys).get()
        if not (mine and current.list_id):
            return None
        found = audit.run_audit(job, list_id=current.list_id,
                                opt_in_process=current.opt_in_process,
                                client=klaviyo(job, background=True),
                                store=state.redis, keys=keys)
    log.info("job %s: scheduled audit: missing %d, extra %d (%d out of place)",
             job_id, found.missing_count, found.extra_count, found.actionable)
    return found


def sweep(
    job_id: str,
    schedule: Scheduler,
    schedule_poll: Callable[[str, str], None],
    schedule_attributes: AttributesScheduler = no_drain,
    schedule_background: Scheduler | None = None,
) -> int:
    """The safety net: flush users nobody is flushing, drain fields nobody is draining, and
    poll imports nobody is polling. While a backfill runs, its leftovers are flushed in the
    background (``schedule_background``), leaving live flushes their reserve; and the jobs
    file's audiences followed (a removed audience's members re-checked)."""
    job, keys, state = _parts(job_id)
    store = JobStateStore(state.redis, keys)
    if store.status() is Status.STOPPED:
        return 0
    lifecycle.follow_audiences(job, store, schedule)
    now = int(time.time() * 1000)
    stale = state.redis.zcount(keys.inflight, "-inf", now)
    if state.due_count(now) or stale:
        backfilling = state.redis.exists(current_run_key(keys.prefix, job_id))
        (schedule_background if backfilling and schedule_background else schedule)(job_id, 0.0)
    if state.redis.zcount(keys.attrs_inflight, "-inf", now):  # a drain died holding fields
        schedule_attributes(job_id, 0.0)
    elif state.redis.zcard(keys.attrs_pending):
        attributes.request(
            state, lambda countdown: schedule_attributes(job_id, countdown),
            load_settings().attribute_wait_seconds,
        )
    if state.redis.zcard(imports.outstanding_key(state)) and not state.redis.exists(
        keys.poll_timer
    ):  # imports nobody polls (a round lost with its worker): start a round
        schedule_poll(job_id, "")
    return int(stale)
