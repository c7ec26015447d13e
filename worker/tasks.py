"""Celery tasks: thin adapters from messages to ``worker.engine``.

Every task has a namespaced name so that moving code never orphans queued
messages, masks its displayed arguments, and runs under ``EngineTask``'s
poison-message guard (a message delivered too often is dead-lettered, not looped).
"""

from __future__ import annotations

from typing import Any

from celery import Task

from worker import engine, runtime
from worker.celery_app import app
from worker.deadletter import DeadLetter, DeadLetterStore
from worker.events import AudienceEvent
from worker.settings import load_settings


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
        key = f"{s.key_prefix}:deliveries:{task_id}:{self.request.retries}"
        r = runtime.redis_client()
        count = int(r.incr(key))
        r.expire(key, 86400)
        if count <= s.max_deliveries:
            return False
        self._dead_letter(args, count)
        return True

    def _dead_letter(self, args: tuple[Any, ...], count: int) -> None:
        job_id = str(args[0]) if args else "unknown"
        events = args[1] if len(args) > 1 and isinstance(args[1], list) else []
        reason = f"{self.name} was delivered {count} times without finishing"
        letters = [
            DeadLetter(
                email=str(e.get("profile", {}).get("email", "")),
                reason=reason,
                source="poison",
                event=e,
            )
            for e in events
        ] or [DeadLetter(email="", reason=reason, source="poison")]
        DeadLetterStore(runtime.redis_client(), load_settings().key_prefix, job_id).add(letters)


def schedule_flush(job_id: str, countdown: float) -> None:
    flush.apply_async((job_id,), countdown=countdown or None)


def schedule_poll(job_id: str, kjob_id: str) -> None:
    poll_import.apply_async((job_id, kjob_id), countdown=load_settings().poll_interval_seconds)


def _record(job_id: str, events: list[dict[str, Any]]) -> int:
    parsed = [AudienceEvent.from_wire(e) for e in events]
    return engine.record(job_id, parsed, schedule_flush).changed


@app.task(name="audience.enter", base=EngineTask, queue="realtime")
def enter(job_id: str, events: list[dict[str, Any]]) -> int:
    """Users entered a selected audience: record it; a flush subscribes them."""
    return _record(job_id, events)


@app.task(name="audience.exit", base=EngineTask, queue="realtime")
def exit_(job_id: str, events: list[dict[str, Any]]) -> int:
    """Users exited an audience: record it; a flush removes those in no other selected audience."""
    return _record(job_id, events)


@app.task(name="audience.change", base=EngineTask, queue="realtime")
def change(job_id: str, events: list[dict[str, Any]]) -> int:
    """Mapped fields changed: record them for current members only."""
    return _record(job_id, events)


@app.task(name="export.flush", base=EngineTask, queue="realtime")
def flush(job_id: str) -> int:
    """Apply the current desired state of one batch of pending users."""
    return engine.flush(job_id, schedule_flush, schedule_poll).claimed


@app.task(name="export.poll_import", base=EngineTask, queue="realtime")
def poll_import(job_id: str, kjob_id: str, attempt: int = 0) -> bool:
    """Wait for a Klaviyo bulk import; release or dead-letter its users when it ends."""
    again = engine.poll_import(job_id, kjob_id, attempt)
    if again is not None:
        poll_import.apply_async(
            (job_id, kjob_id), {"attempt": again.attempt}, countdown=again.countdown
        )
    return again is None


@app.task(name="export.bootstrap", base=EngineTask, queue="maintenance")
def bootstrap(job_id: str) -> str | None:
    """Resolve (find, create or re-check) the job's Klaviyo list."""
    list_id = engine.run_bootstrap(job_id)
    if list_id and runtime.redis_client().zcard(runtime.job_keys(job_id).pending):
        schedule_flush(job_id, 0.0)
    return list_id


@app.task(name="export.sweep", base=EngineTask, queue="maintenance")
def sweep() -> int:
    """Beat's safety flush: every job with users waiting gets a flush, every import a poll."""
    swept = 0
    for job in runtime.jobs().jobs:
        swept += engine.sweep(job.id, schedule_flush, schedule_poll)
    return swept


@app.task(name="export.bootstrap_all", base=EngineTask, queue="maintenance")
def bootstrap_all() -> int:
    """Beat: re-check every job's list (and resume jobs whose key works again)."""
    for job in runtime.jobs().jobs:
        bootstrap.delay(job.id)
    return len(runtime.jobs().jobs)
