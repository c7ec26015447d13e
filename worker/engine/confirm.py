"""Who confirmed: on a double opt-in list, subscribed people join only once they confirm.

Until then they are *awaiting confirmation* (``applied`` ``wait``, counted in
``awaiting_confirmation``, not in ``added``). Klaviyo tells nobody when someone confirms, so a
pass reads the list's recent joiners: ``GET /api/lists/{id}/profiles`` filtered on
``joined_group_at`` at or after the job's watermark less :data:`OVERLAP_SECONDS`, oldest join
first, 100 a page, one call per page through the job's limited client, never one look-up per
person. Each page:

- the awaiting people on it become members (``in``: out of ``awaiting_confirmation``, into
  ``added``); a ``try`` user (a subscribe whose answer was lost) found on it is added too;
- someone who left the audience before confirming (``outw``) and confirmed anyway is added and
  made pending again, so a flush removes them (Klaviyo cannot cancel a confirmation email);
- its members' profile ids are cached for later removals;
- the watermark moves to the page's newest ``joined_group_at``, so a pass cut short (our
  throttle, a 429, a 5xx) starts again where it stopped.

The watermark is first set just before the job's first subscribe to the list (nobody can
confirm earlier; without one there is no pass); the overlap covers reads that lag behind
writes and joins that share a second. Re-reading a joiner changes nothing. A pass runs from
beat every ``CONFIRM_INTERVAL_SECONDS`` and after a flush of the job, at most once per interval
(:func:`due`). Only jobs whose list is double opt-in and that subscribe (not ``force_add``)
record confirmations (or that still count people awaiting); single opt-in lists and force add
are added at once, as before.

The same read is the audit's incremental check, for every job (:func:`check_pass`): a joiner
who is in none of the job's audiences and whom the engine is not working on is *extra* drift
(``added_by_hand`` when the job never had them, else ``confirmed_after_exit`` or
``overtaken_by_async_job``, as :mod:`worker.engine.audit` names them; an add-only job's
leavers are kept, not drift). They are kept by :class:`~worker.state.audits.AuditStore` until
the next full audit, and shown by ``status`` and ``health``. A job with a confirmation pass
checks the pages that pass reads anyway (no other call). A job with none (a single opt-in list
or a force add) has its own, slower :func:`cadence`: ``AUDIT_INCREMENTAL_SECONDS``, through the
background client (live flushes go first); its watermark starts at its first check.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from core.jobs import ExportJob
from core.keys import account_ids_key
from core.settings import Settings
from worker.engine.audit import in_transit_of
from worker.klaviyo import lists
from worker.klaviyo.client import KlaviyoClient
from worker.klaviyo.errors import AuthError, KlaviyoError, KlaviyoRetriableError, NotFound
from worker.limits.gate import Throttled
from worker.state.audits import AuditStore
from worker.state.counters import JobCounters
from worker.state.desired import DesiredState
from worker.state.jobstate import JobState, JobStateStore

DOUBLE_OPT_IN = "double_opt_in"
OVERLAP_SECONDS = 300.0
DUE_SHARE = 0.8  # a pass may start again after this share of the interval (beat's jitter)
log = logging.getLogger(__name__)


def awaits_confirmation(job: ExportJob, state: JobState) -> bool:
    """True when the job's subscribed people await confirmation: a double opt-in list (as
    Klaviyo reports it) and a job that subscribes (force add changes no consent)."""
    return not job.force_add and state.opt_in_process == DOUBLE_OPT_IN


def needs_pass(job: ExportJob, jobstate: JobState, state: DesiredState) -> bool:
    """A pass is worth running: the job's people await confirmation, or some still do (the
    list was switched to single opt-in, or the job to force add, after they subscribed)."""
    if awaits_confirmation(job, jobstate):
        return True
    counters = JobCounters(state.redis, state.keys.prefix, state.keys.job_id)
    return counters.snapshot().awaiting_confirmation > 0


def start_watermark(state: DesiredState, now: float | None = None) -> None:
    """Before the job's first subscribe: nobody can confirm earlier than now (kept if set)."""
    moment = datetime.fromtimestamp(time.time() if now is None else now, tz=UTC)
    state.redis.set(state.keys.confirm_watermark, moment.isoformat(), nx=True)


def watermark(state: DesiredState) -> datetime | None:
    """The newest ``joined_group_at`` read so far (or the first subscribe); None: never set."""
    raw = state.redis.get(state.keys.confirm_watermark)
    text = raw.decode() if isinstance(raw, bytes) else raw
    return lists.parse_time(text) if text else None


@dataclass(frozen=True)
class Cadence:
    """How often a job's recent joiners are read, and what for."""

    confirms: bool  # a confirmation pass (which also audits), else the incremental audit alone
    seconds: float


def cadence(job: ExportJob, jobstate: JobState, state: DesiredState, settings: Settings) -> Cadence:
    """A job with people to confirm (:func:`needs_pass`): ``CONFIRM_INTERVAL_SECONDS``; any
    other job: ``AUDIT_INCREMENTAL_SECONDS``, for its incremental audit alone."""
    if needs_pass(job, jobstate, state):
        return Cadence(True, settings.confirm_interval_seconds)
    return Cadence(False, settings.audit_incremental_seconds)


def due(
    state: DesiredState, interval_seconds: float, *, tick_seconds: float | None = None,
    incremental: bool = False,
) -> bool:
    """Claim this interval's pass for the job (a confirmation pass, or an ``incremental`` audit
    alone, each with its own claim): True at most once per interval, less ``1 - DUE_SHARE`` of
    beat's tick (``tick_seconds``, at most the interval) for its jitter."""
    tick = interval_seconds if tick_seconds is None else min(tick_seconds, interval_seconds)
    ttl_ms = max(1, int((interval_seconds - (1 - DUE_SHARE) * tick) * 1000))
    key = state.keys.audit_incremental_due if incremental else state.keys.confirm_due
    return bool(state.redis.set(key, 1, nx=True, px=ttl_ms))


@dataclass
class ConfirmOutcome:
    """What one pass read and changed."""

    pages: int = 0
    joiners: int = 0  # members read (repeats across the overlap included)
    confirmed: int = 0  # awaiting people who confirmed
    recovered: int = 0  # ``try`` users found on the list
    rejoined: int = 0  # left before confirming, confirmed anyway: pending again, to be removed
    extra: int = 0  # joiners in no audience the engine is not working on (incremental audit)
    stopped: str = ""  # why the pass ended before the last page


def check_pass(
    job: ExportJob, state: DesiredState, store: JobStateStore, client: KlaviyoClient,
    list_id: str, *, confirms: bool,
) -> ConfirmOutcome:
    """The incremental audit of recent joiners, for any job: extra drift found, and who
    confirmed when ``confirms`` (:func:`needs_pass`)."""
    if watermark(state) is None and not confirms:
        start_watermark(state)  # nobody to confirm: joiners are read from now on
        return ConfirmOutcome()
    return confirm_pass(state, store, client, list_id, job=job, confirms=confirms)


def confirm_pass(
    state: DesiredState, store: JobStateStore, client: KlaviyoClient, list_id: str,
    *, job: ExportJob | None = None, confirms: bool = True,
) -> ConfirmOutcome:
    """Read the list's joiners since the watermark, page by page, and record who confirmed
    (``confirms``) and, given the ``job``, who is extra."""
    outcome = ConfirmOutcome()
    mark = watermark(state)
    if mark is None:  # nobody was subscribed to the list yet: nobody to confirm
        return outcome
    since = mark - timedelta(seconds=OVERLAP_SECONDS)
    confirmed_kind = _confirmed_kind(job, store.get()) if job else ""
    try:
        for page in lists.list_members_since(client, list_id, since):
            outcome.pages += 1
            _page(state, client.account, page, outcome, confirms)
            if job is not None:
                outcome.extra += _extra(job, state, page, confirmed_kind)
    except Throttled as exc:
        outcome.stopped = f"throttled for {exc.wait:.1f}s"
    except KlaviyoRetriableError as exc:
        outcome.stopped = f"{type(exc).__name__}: {exc}"
    except NotFound as exc:  # the list is gone: the next bootstrap fails the job, saying so
        outcome.stopped = f"list not found: {exc}"
    except AuthError as exc:
        store.auth_failed(f"Klaviyo refused the key ({exc.status}): {exc}")
        outcome.stopped = str(exc)
    except KlaviyoError as exc:
        outcome.stopped = f"{type(exc).__name__}: {exc}"
        JobCounters(state.redis, state.keys.prefix, state.keys.job_id).set_last_error(
            f"confirmations: {outcome.stopped}")
    if outcome.stopped:
        log.warning("job %s: confirmation pass stopped after %d page(s): %s",
                    state.keys.job_id, outcome.pages, outcome.stopped)
    return outcome


def _page(
    state: DesiredState, account: str, page: list[lists.ListMember], outcome: ConfirmOutcome,
    confirms: bool = True,
) -> None:
    outcome.joiners += len(page)
    emails = {m.email.strip().lower(): m.id for m in page if m.email}
    if emails:
        state.redis.hset(account_ids_key(state.keys.prefix, account), mapping=emails)  # type: ignore[arg-type]  # redis-py Mapping is invariant
    if emails and confirms:
        confirmed, recovered, rejoined = state.confirm(list(emails), int(time.time() * 1000))
        outcome.confirmed += confirmed
        outcome.recovered += recovered
        outcome.rejoined += rejoined
    newest = max((m.joined_group_at for m in page if m.joined_group_at), default=None)
    if newest is not None:
        _advance(state, newest)


def _confirmed_kind(job: ExportJob, jobstate: JobState) -> str:
    """What a former member back on the list is: one who confirmed after leaving (a double
    opt-in subscribe), else one a slow Klaviyo job put back after the removal."""
    double = jobstate.opt_in_process == DOUBLE_OPT_IN and not job.force_add
    return "confirmed_after_exit" if double else "overtaken_by_async_job"


def _extra(job: ExportJob, state: DesiredState, page: list[lists.ListMember], kind: str) -> int:
    """Note the page's joiners who are in no audience (module doc); how many there were.
    Only those are looked for among the users the engine is working on."""
    emails = sorted({m.email.strip().lower() for m in page if m.email})
    audits = AuditStore(state.redis, state.keys)
    outside = {email: code for email, (member, code, _told)
               in zip(emails, audits.survey(emails), strict=True) if not member}
    busy = in_transit_of(state.redis, state.keys, list(outside))
    found = {email: "added_by_hand" if code is None else kind
             for email, code in outside.items()
             if email not in busy and (code is None or job.removes_on_exit)}
    audits.note_extra(found)
    return len(found)


def _advance(state: DesiredState, newest: datetime) -> None:
    """Move the watermark forward (never back: two passes may overlap)."""
    current = watermark(state)
    if current is None or newest > current:
        state.redis.set(state.keys.confirm_watermark, newest.isoformat())
