"""Celery tasks: thin adapters from messages to ``worker.engine.export``.

Every task has a namespaced name so that moving code never orphans queued
messages, masks its displayed arguments, and runs under ``EngineTask``'s
poison-message guard (a message delivered too often is dead-lettered, not looped).

The record tasks (``audience.*``) run under ``RecordTask``: their message is the only copy of
the events it carries, so it is acknowledged only once they are recorded or dead-lettered with
the events themselves. Any error while recording is retried with backoff; when the attempts
run out, or the job is gone from the jobs file, every event goes to the job's dead letters,
from where ``dlq replay`` records them again.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from celery import Task, signals
from celery.exceptions import Reject
from pydantic import ValidationError

from core import names
from core.events import AudienceEvent
from core.jobs import JobsFileError, UnknownJobError
from core.keys import deliveries_key
from core.redact import redact
from core.settings import load_settings
from worker import runtime
from worker.celery_app import app
from worker.engine import export as engine
from worker.limits import retry
from worker.state import timers
from worker.state.deadletter import DeadLetterStore, event_letters
from worker.state.desired import DesiredState

log = logging.getLogger(__name__)


@signals.worker_init.connect
def _jobs_file_loads(**_: Any) -> None:
    """A worker that starts with a bad jobs file stops at once, with one line.

    Loaded here, in the main process, the file is inherited by every prefork child, so a
    child forked later while the file is bad still has the last good version.
    """
    try:
        runtime.jobs()
    except JobsFileError as exc:
        print(f"celery worker: {load_settings().export_jobs_file}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


class EngineTask(Task):  # type: ignore[misc]
    """Counts deliveries per message; past ``MAX_DELIVERIES`` the message is set aside."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._poisoned(args):
            return None
        return super().__call__(*args, **kwargs)

    def _poisoned(self, args: tuple[Any, ...]) -> bool:
        task_id = self.request.id
        if not task_id:
            return False
        s = load_settings()
        key = deliveries_key(s.key_prefix, task_id, self.request.retries)
        r = runtime.redis_client()
        count = int(r.incr(key))
        r.expire(key, 86400)
        if count <= s.max_deliveries:
            return False
        self._dead_letter(args, count)
        return True

    def _dead_letter(self, args: tuple[Any, ...], count: int) -> None:
        job_id, events = _message(args)
        reason = f"{self.name} was delivered {count} times without finishing"
        letters = event_letters(events, reason=reason, source="poison")
        DeadLetterStore(runtime.redis_client(), load_settings().key_prefix, job_id).add(letters)


class RecordTask(EngineTask):
    """A record task: never acknowledged before its events are recorded or dead-lettered.

    Celery acknowledges a failed ``acks_late`` task (on Redis even a reject without requeue
    is an ack), and a retry it cannot publish becomes exactly such a reject. So nothing may
    escape as a failure: the job gone from the jobs file dead-letters the events at once
    (``unknown_job``); any other error is retried with backoff up to ``MAX_DELIVERIES``
    attempts, then dead-letters them (``record_failed``); a malformed event dead-letters the
    message at once (``invalid_event``); when even that cannot be written,
    or the retry cannot be published, the message is put back on its queue.
    """

    acks_on_timeout = False  # a hard time limit puts the message back (the poison guard bounds it)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        job_id, events = _message(args)
        try:
            return super().__call__(*args, **kwargs)
        except UnknownJobError as exc:
            return self._set_aside(job_id, events, "unknown_job", str(exc))
        except ValidationError as exc:  # not an event at all: no retry will make it one
            return self._set_aside(job_id, events, "invalid_event", redact(str(exc))[:500])
        except Exception as exc:  # noqa: BLE001 - whatever it is, the events must not be lost
            return self._again(job_id, events, exc)

    def _again(self, job_id: str, events: list[Any], exc: Exception) -> int:
        attempt = int(self.request.retries or 0)
        s = load_settings()
        detail = redact(f"{type(exc).__name__}: {exc}")
        if attempt + 1 >= s.max_deliveries:
            return self._set_aside(job_id, events, "record_failed", detail)
        countdown = retry.record_retry(attempt, s.visibility_timeout_seconds)
        log.warning("%s for job %s failed (attempt %d of %d), retrying in %.1fs: %s",
                    self.name, job_id, attempt + 1, s.max_deliveries, countdown, detail)
        try:
            raise self.retry(exc=exc, countdown=countdown, max_retries=s.max_deliveries)
        except Reject as rejected:  # the retry could not be published: keep the message
            raise Reject(rejected.reason, requeue=True) from None

    def _set_aside(self, job_id: str, events: list[Any], reason: str, detail: str) -> int:
        letters = event_letters(events, reason=reason, source=self.name, detail=detail)
        try:
            DeadLetterStore(runtime.redis_client(), load_settings().key_prefix, job_id).add(letters)
        except Exception as exc:  # noqa: BLE001 - cannot set them aside: keep the message instead
            raise Reject(exc, requeue=True) from None
        log.error("%s for job %s: %d event(s) dead-lettered (%s): %s",
                  self.name, job_id, len(letters), reason, detail)
        return 0


def _message(args: tuple[Any, ...]) -> tuple[str, list[Any]]:
    """(job id, events) of a record message, whatever shape it arrived in."""
    job_id = str(args[0]) if args else "unknown"
    events = args[1] if len(args) > 1 and isinstance(args[1], list) else []
    return job_id, events


def schedule_flush(job_id: str, countdown: float) -> None:
    _send_flush(job_id, countdown, names.REALTIME)


def schedule_background_flush(job_id: str, countdown: float) -> None:
    """A flush a backfill asks for: on the backfill queue, charged as the backfill is."""
    _send_flush(job_id, countdown, names.BACKFILL)


def _send_flush(job_id: str, countdown: float, queue: str) -> None:
    """A flush now, or one for later unless one is lined up by then (worker/state/timers)."""
    options: dict[str, Any] = {"background": True} if queue == names.BACKFILL else {}
    if countdown > 0:
        countdown_ms = int(countdown * 1000)
        due = int(time.time() * 1000) + countdown_ms
        if not timers.line_up(runtime.redis_client(), runtime.job_keys(job_id), queue, due,
                              countdown_ms):
            return
        options["due"] = due
    flush.apply_async((job_id,), options, countdown=countdown or None, queue=queue)


def schedule_attributes(job_id: str, countdown: float) -> None:
    flush_attributes.apply_async((job_id,), countdown=countdown or None)


def schedule_poll(job_id: str, kjob_id: str) -> None:
    """A new import (``kjob_id``) is outstanding: make sure a round of the job's polls
    follows (one round polls all of them)."""
    state = DesiredState(runtime.redis_client(), runtime.job_keys(job_id))
    engine.request_polls(job_id, state, _schedule_round, load_settings().poll_interval_seconds)


def _schedule_round(job_id: str, countdown: float, attempt: int) -> None:
    poll_imports.apply_async((job_id,), {"attempt": attempt}, countdown=countdown or None)


def _record(job_id: str, events: list[dict[str, Any]]) -> int:
    runtime.job(job_id)  # an unknown job is known as such before any event is parsed
    parsed = [AudienceEvent.from_wire(e) for e in events]
    return engine.record(job_id, parsed, schedule_flush).changed


@app.task(name=names.AUDIENCE_ENTER, base=RecordTask, queue=names.REALTIME)
def enter(job_id: str, events: list[dict[str, Any]]) -> int:
    """Users entered a selected audience: record it; a flush subscribes them."""
    return _record(job_id, events)


@app.task(name=names.AUDIENCE_EXIT, base=RecordTask, queue=names.REALTIME)
def exit_(job_id: str, events: list[dict[str, Any]]) -> int:
    """Users exited an audience: record it; a flush removes those in no other selected audience."""
    return _record(job_id, events)


@app.task(name=names.AUDIENCE_CHANGE, base=RecordTask, queue=names.REALTIME)
def change(job_id: str, events: list[dict[str, Any]]) -> int:
    """Mapped fields changed: record them for current members only."""
    return _record(job_id, events)


@app.task(name=names.FLUSH, base=EngineTask, queue=names.REALTIME)
def flush(job_id: str, background: bool = False, due: int | None = None) -> int:
    """Apply the current desired state of one batch of pending users (``background``: for
    a backfill, leaving live flushes their reserve of every window; ``due``: the flush lined
    up for then, whose mark it takes away)."""
    if due is not None:
        timers.ran(runtime.redis_client(), runtime.job_keys(job_id),
                   names.BACKFILL if background else names.REALTIME, due)
    follow = schedule_background_flush if background else schedule_flush
    outcome = engine.flush(
        job_id, follow, schedule_poll, schedule_attributes, background=background
    )
    if outcome.confirm:
        confirm.delay(job_id)
    return outcome.claimed


@app.task(name=names.FLUSH_ATTRIBUTES, base=EngineTask, queue=names.REALTIME)
def flush_attributes(job_id: str) -> int:
    """Send one bulk import (up to 10,000 profiles) of members' queued mapped fields."""
    return engine.flush_attributes(job_id, schedule_attributes, schedule_poll).sent


@app.task(name=names.POLL_IMPORTS, base=EngineTask, queue=names.REALTIME)
def poll_imports(job_id: str, attempt: int = 0) -> bool:
    """Poll every outstanding Klaviyo bulk import of the job; release or dead-letter the
    users of those that ended; the next round is lined up while any runs."""
    done = engine.poll_imports(job_id, _schedule_round, attempt) is None
    if runtime.redis_client().zcount(runtime.job_keys(job_id).pending, "-inf",
                                     int(time.time() * 1000)):
        schedule_flush(job_id, 0.0)  # users handed back (sent again without a 409's value)
    return done


@app.task(name=names.POLL_IMPORT, base=EngineTask, queue=names.REALTIME)
def poll_import(job_id: str, kjob_id: str, attempt: int = 0) -> bool:
    """A poll of one import, queued before rounds existed: now it starts the job's round."""
    schedule_poll(job_id, kjob_id)
    return False


@app.task(name=names.BOOTSTRAP, base=EngineTask, queue=names.MAINTENANCE)
def bootstrap(job_id: str) -> str | None:
    """Resolve (find, create or re-check) the job's Klaviyo list."""
    list_id = engine.run_bootstrap(job_id)
    if list_id and runtime.redis_client().zcard(runtime.job_keys(job_id).pending):
        schedule_flush(job_id, 0.0)
    return list_id


@app.task(name=names.SWEEP, base=EngineTask, queue=names.MAINTENANCE)
def sweep() -> int:
    """Beat's safety flush: every job with users waiting gets a flush, every import a poll."""
    swept = 0
    for job in runtime.jobs().jobs:
        swept += engine.sweep(job.id, schedule_flush, schedule_poll, schedule_attributes,
                              schedule_background_flush)
    return swept


@app.task(name=names.CONFIRM, base=EngineTask, queue=names.MAINTENANCE)
def confirm(job_id: str) -> int:
    """Read the list's recent joiners: extra drift, and who of the people awaiting confirmed."""
    outcome = engine.run_confirm(job_id, schedule_flush)
    return outcome.confirmed if outcome else 0


@app.task(name=names.CONFIRM_ALL, base=EngineTask, queue=names.MAINTENANCE)
def confirm_all() -> int:
    """Beat: a pass over recent joiners (incremental audit, confirmations) for every job due one."""
    return _for_each_job_due(engine.confirm_wanted, confirm)


@app.task(name=names.AUDIT, base=EngineTask, queue=names.MAINTENANCE)
def audit(job_id: str) -> int:
    """A scheduled full audit of one job's list (no repair): people out of place."""
    found = engine.run_full_audit(job_id)
    return found.actionable if found else 0


@app.task(name=names.AUDIT_ALL, base=EngineTask, queue=names.MAINTENANCE)
def audit_all() -> int:
    """Beat: a full audit for every job whose ``audit_every_hours`` says one is due."""
    return _for_each_job_due(engine.full_audit_wanted, audit)


def _for_each_job_due(due: Callable[[str], bool], task: Any) -> int:
    """Send ``task`` for every job that ``due`` says wants it now; how many were sent."""
    wanted = [job.id for job in runtime.jobs().jobs if due(job.id)]
    for job_id in wanted:
        task.delay(job_id)
    return len(wanted)


@app.task(name=names.BOOTSTRAP_ALL, base=EngineTask, queue=names.MAINTENANCE)
def bootstrap_all() -> int:
    """Beat: re-check every job's list (and resume jobs whose key works again)."""
    for job in runtime.jobs().jobs:
        bootstrap.delay(job.id)
    return len(runtime.jobs().jobs)
