"""Backfill: the plain functions behind the chunk and segment tasks, and the progress store.

A run lives in Redis under ``{prefix}:bf:{job}:{run}``: a hash of progress counters and the
producer's checkpoint, the chunks themselves (``:chunk:{n}``, one row per person:
``worker.engine.backfill_rows``) and guard sets (``:done``, ``:segs``) that make every count happen
once, however often a message is delivered. ``{prefix}:bf:{job}:current`` names the
unfinished run a rerun resumes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import redis

from core import names
from core.jobs import ExportJob
from core.redact import redact
from core.settings import load_settings
from worker import runtime
from worker.engine import export as engine
from worker.engine.backfill_rows import (
    NOT_IN_AUDIENCE,
    Chunk,
    chunk_from_json,
    chunk_json,
    chunk_marks,
)
from worker.engine.flush import FlushContext, Flusher
from worker.engine.record import count_marked
from worker.state.counters import JobCounters, counters_key
from worker.state.deadletter import DeadLetterStore
from worker.state.desired import DesiredState
from worker.state.jobstate import JobStateStore

CHUNK_TTL = 7 * 86400
RUN_TTL = 30 * 86400

# done set, run hash, results hash, job counters | n, result json, run deltas..., '|', job deltas...
_COMMIT = """
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return redis.call('HGET', KEYS[3], ARGV[1]) end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
local target, i = KEYS[2], 3
while i <= #ARGV do
  if ARGV[i] == '|' then target = KEYS[4]; i = i + 1
  else redis.call('HINCRBY', target, ARGV[i], ARGV[i+1]); i = i + 2 end
end
return ARGV[2]
"""

# run hash | finished-at: finalize once, when dispatch is over and every chunk is counted.
# Chunks, not chord bodies, decide: a worker killed between claiming a chord's callback and
# publishing it loses that callback for good (Celery's Redis backend), never a chunk's count.
_FINALIZE = """
local h = redis.call('HMGET', KEYS[1], 'dispatch_done', 'dispatched', 'done')
if h[1] ~= '1' or tonumber(h[3] or '0') < tonumber(h[2] or '0') then return 0 end
return redis.call('HSETNX', KEYS[1], 'finished_at', ARGV[1])
"""


class RunStore:
    """One backfill run's keys and the few atomic operations on them."""

    def __init__(self, client: redis.Redis, prefix: str, job_id: str, run_id: str) -> None:
        self.redis = client
        self.prefix, self.job_id, self.run_id = prefix, job_id, run_id
        self.key = f"{prefix}:bf:{job_id}:{run_id}"

    def chunk_key(self, n: int) -> str:
        return f"{self.key}:chunk:{n}"

    def save_chunk(self, n: int, rows: list[dict[str, Any]], omitted: dict[str, int]) -> None:
        """Chunk ``n``: people as ``ChunkRow`` dicts, and those left out before it by reason."""
        self.redis.set(self.chunk_key(n), chunk_json(rows, omitted), ex=CHUNK_TTL)

    def load_chunk(self, n: int) -> Chunk | None:
        raw = self.redis.get(self.chunk_key(n))
        return None if raw is None else chunk_from_json(raw)

    def stored_result(self, n: int) -> dict[str, Any] | None:
        raw = self.redis.hget(f"{self.key}:results", str(n))
        return None if raw is None else dict(orjson.loads(raw))

    def commit(self, n: int, result: dict[str, Any], job_deltas: dict[str, int]) -> dict[str, Any]:
        """Count a chunk's result once; a redelivered chunk gets the first result back."""
        body = orjson.dumps(result, option=orjson.OPT_SORT_KEYS).decode()
        argv: list[str | int] = [n, body]
        for name in ("profiles", "exported", "failed"):
            argv += [name, int(result.get(name, 0))]
        for reason, count in result.get("omitted", {}).items():
            argv += [f"omitted:{reason}", count]
        argv += ["done", 1, "|"]
        for name, count in job_deltas.items():
            argv += [name, count]
        keys = [f"{self.key}:done", self.key, f"{self.key}:results",
                counters_key(self.prefix, self.job_id)]
        out = self.redis.register_script(_COMMIT)(keys=keys, args=argv)
        self.redis.delete(self.chunk_key(n))
        self.try_finalize()
        return dict(orjson.loads(out))

    def segment_done(self, seg: int) -> bool:
        """Count a segment once (progress); True when this call finished the run."""
        if self.redis.sadd(f"{self.key}:segs", seg):
            self.redis.hincrby(self.key, "segments_done", 1)
        return self.try_finalize()

    def try_finalize(self) -> bool:
        now = f"{time.time():.3f}"
        if not self.redis.register_script(_FINALIZE)(keys=[self.key], args=[now]):
            return False
        self._summarize()
        return True

    def _summarize(self) -> None:
        letters = self.redis.hget(counters_key(self.prefix, self.job_id), "dead_lettered")
        current = f"{self.prefix}:bf:{self.job_id}:current"
        pipe = self.redis.pipeline()
        pipe.hset(self.key, mapping={"status": "finished", "dead_lettered": int(letters or 0)})
        for suffix in ("", ":done", ":segs", ":results"):
            pipe.expire(self.key + suffix, RUN_TTL)
        pipe.execute()
        if _text(self.redis.get(current)) == self.run_id:
            self.redis.delete(current)

    def progress(self) -> dict[str, str]:
        return {_text(k): _text(v) for k, v in self.redis.hgetall(self.key).items()}


def run_store(job_id: str, run_id: str) -> RunStore:
    return RunStore(runtime.redis_client(), load_settings().key_prefix, job_id, run_id)


def flush_context(job: ExportJob, list_id: str, state: DesiredState,
                  schedule_poll: Callable[[str, str], None]) -> FlushContext:
    """The engine's flush context for a backfill chunk (its own queue, a bulk-cap batch)."""
    s = load_settings()
    return FlushContext(
        job=job, list_id=list_id, state=state, jobstate=JobStateStore(state.redis, state.keys),
        gate=engine.gate_for(job),
        deadletters=DeadLetterStore(state.redis, state.keys.prefix, job.id),
        batch_size=10_000 if job.force_add else s.flush_batch_size,
        lease_seconds=s.lease_seconds, settle_seconds=s.subscribe_settle_seconds,
        queue=names.BACKFILL, schedule_poll=lambda kjob_id: schedule_poll(job.id, kjob_id),
    )


@dataclass(frozen=True)
class ChunkOutcome:
    result: dict[str, Any] | None = None  # the committed counts; None: throttled, retry
    again_in: float = 0.0


def run_chunk(job_id: str, run_id: str, n: int, schedule_flush: engine.Scheduler,
              schedule_poll: Callable[[str, str], None]) -> ChunkOutcome:
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
    if job_state.can_call and job_state.list_id:
        lease_ms = int(load_settings().lease_seconds * 1000)
        _changed, claimed = state.record_and_claim(marks, now, lease_ms)
        context = flush_context(job, job_state.list_id, state, schedule_poll)
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
