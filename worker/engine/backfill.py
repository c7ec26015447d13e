"""Backfill: the plain functions behind the chunk and segment tasks.

A run's chunks and progress live in Redis (``core.runs.RunStore``); a chunk task records
its rows, flushes the users it claimed and counts the chunk once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from core import names
from core.chunks import NOT_IN_AUDIENCE
from core.redact import redact
from core.runs import RunStore
from core.settings import load_settings
from worker import runtime
from worker.engine import export as engine
from worker.engine.backfill_rows import chunk_marks
from worker.engine.flush import Flusher
from worker.engine.record import count_marked
from worker.limits import retry
from worker.state.counters import JobCounters
from worker.state.desired import DesiredState
from worker.state.jobstate import JobStateStore, Status


def run_store(job_id: str, run_id: str) -> RunStore:
    return RunStore(runtime.redis_client(), load_settings().key_prefix, job_id, run_id)


log = logging.getLogger(__name__)
# Redis went away for a moment (a restart, a failover, a dropped connection): the chunk is
# run again later, never counted as failed for it
PASSING_REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError)


@dataclass(frozen=True)
class ChunkOutcome:
    result: dict[str, Any] | None = None  # the committed counts; None: run it again
    again_in: float = 0.0


def export_chunk(job_id: str, run_id: str, n: int, schedule_flush: engine.Scheduler,
                 schedule_poll: Callable[[str, str], None], *, attempt: int = 0,
                 schedule_attributes: engine.AttributesScheduler = engine.no_drain,
                 ) -> ChunkOutcome:
    """Run chunk ``n``; a passing Redis error runs it again later, any other error counts it
    as failed (logged with its traceback, which reaches Sentry) so the run still finishes."""
    try:
        return run_chunk(job_id, run_id, n, schedule_flush, schedule_poll,
                         schedule_attributes=schedule_attributes)
    except PASSING_REDIS_ERRORS as exc:
        wait = retry.chunk_retry(attempt)
        log.warning("backfill %s/%s chunk %d: Redis unreachable (%s), again in %.1fs",
                    job_id, run_id, n, type(exc).__name__, wait)
        return ChunkOutcome(None, wait)
    except Exception as exc:
        log.exception("backfill %s/%s chunk %d failed", job_id, run_id, n)
        return ChunkOutcome(fail_chunk(job_id, run_id, n, f"{type(exc).__name__}: {exc}"))


def run_chunk(job_id: str, run_id: str, n: int, schedule_flush: engine.Scheduler,
              schedule_poll: Callable[[str, str], None], *,
              schedule_attributes: engine.AttributesScheduler = engine.no_drain,
              ) -> ChunkOutcome:
    """Record chunk ``n``, flush the users it claimed, count it once."""
    store = run_store(job_id, run_id)
    stored = store.stored_result(n)
    if stored is not None:  # delivered again, or dispatched again by a resumed producer
        store.redis.delete(store.chunk_key(n))
        return ChunkOutcome(stored)
    chunk = store.load_chunk(n)
    if chunk is None:
        return ChunkOutcome(store.commit(n, {"n": n, "failed": 1, "missing": 1}, {}))
    job = runtime.job(job_id)
    state = DesiredState(runtime.redis_client(), runtime.job_keys(job_id))
    made = chunk_marks(job, chunk)
    marks = made.marks
    now = int(time.time() * 1000)
    job_state = JobStateStore(state.redis, state.keys).get()
    if job_state.status is Status.STOPPED:  # forgotten: the chunk is counted, nothing recorded
        return ChunkOutcome(store.commit(n, {"n": n, "profiles": chunk.people,
                                              "omitted": {"job_stopped": chunk.people}}, {}))
    if job_state.can_call and job_state.list_id:
        lease_ms = int(load_settings().lease_seconds * 1000)
        _changed, claimed = state.record_and_claim(marks, now, lease_ms)
        context = engine.flush_context(job, job_state.list_id, state, schedule_poll,
                                       queue=names.BACKFILL,
                                       schedule_attributes=schedule_attributes)
        outcome = Flusher(context).run(claimed)
        if outcome.again_in is not None and not outcome.transient and not outcome.stopped:
            return ChunkOutcome(None, outcome.again_in)
    else:
        state.record(marks, now)  # the job cannot call Klaviyo now: its flushes catch up later
    if state.pending_count():
        engine.request_flush(job_id, state, schedule_flush)
    # once per person, on the job: a redelivered chunk, or a second run, adds nobody twice
    count_marked(JobCounters(state.redis, state.keys.prefix, job_id), made.marked)
    result = {"n": n, "profiles": chunk.people, "exported": made.exported,
              "omitted": dict(made.omitted)}
    # left out by the producer: counted per row, once per chunk; people outside the job's
    # audiences are the run's to report, not the job's people
    deltas = {f"omitted:{r}": c for r, c in chunk.omitted.items() if r != NOT_IN_AUDIENCE}
    return ChunkOutcome(store.commit(n, result, deltas))


def fail_chunk(job_id: str, run_id: str, n: int, error: str) -> dict[str, Any]:
    """Count a chunk that raised as failed (its profiles, when readable), once."""
    store = run_store(job_id, run_id)
    try:
        chunk = store.load_chunk(n)
    except ValueError:  # unreadable: count it as one, as a missing chunk is
        chunk = None
    size = chunk.people if chunk is not None else 1
    store.redis.hset(store.key, "last_error", redact(error[:2000])[:500])
    return store.commit(n, {"n": n, "profiles": size, "failed": size}, {})


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")
