"""Stream a source into stored chunks and flat chords of chunk tasks, with a checkpoint.

Each chunk holds up to the mode's bulk cap of people (1,000 to subscribe, 10,000 to
force-add), one row per person with every selected audience they are in, so a chunk claims
at most one Klaviyo call's worth of users; people the source leaves out (not in the job's
audiences) are only counted, in the next chunk, which closes early once it accounts for ten
caps of people. Chunks are written to Redis (``core.chunks``, ``core.runs``); messages carry only
``(job, run, n)``. Every enter carries the source's snapshot time (``snapshot_ns``, kept
by a resumed run), so an exit recorded after the snapshot wins. Chunks go out in segments: one
flat chord of up to ``segment_chunks`` chunk tasks and a ``backfill.segment`` body, sent as
soon as the segment is full (or ``segment_seconds`` old), so workers start while the source
is still being read; the first segments hold 1, 2, 4, ... chunks, so the first chunk goes out
as soon as it is written. After each segment the checkpoint records where the source resumes,
but only once the segment's chunks and messages are confirmed on the replicas asked for
(``durable``, :class:`core.redisconn.Replicated`): a failover that loses them leaves the
checkpoint before them, so a rerun sends them again.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
import redis
from celery import Celery, chord

from contract import operations as ops
from core import names
from core.jobs import ExportJob
from core.keys import current_run_key, last_run_key
from core.redisconn import Replicated
from core.runs import RUN_TTL, RunStore
from producers.backfill.member import Member

SUBSCRIBE_CHUNK = ops.BULK_SUBSCRIBE.batch_cap
FORCE_ADD_CHUNK = ops.BULK_IMPORT.batch_cap
PEOPLE_PER_CHUNK = 10  # bulk caps of people a chunk accounts for at most, left-out ones included


class Source(Protocol):
    def describe(self) -> str: ...
    def snapshot_ns(self) -> int: ...
    def total(self) -> int | None: ...
    def members(self, position: dict[str, Any]) -> Iterator[Member]: ...


@dataclass
class Cursor:
    """Where the run stands: the source position, the next chunk and segment numbers."""

    position: dict[str, Any]
    chunk: int = 0
    segment: int = 0
    profiles: int = 0


class Producer:
    """One backfill run of one job: new, or resumed from its checkpoint."""

    def __init__(self, client: redis.Redis, prefix: str, job: ExportJob, source: Source, *,
                 app: Celery, segment_chunks: int = 20, segment_seconds: float = 2.0,
                 chunk_size: int | None = None, durable: Replicated | None = None) -> None:
        self.redis, self.prefix, self.job, self.source = client, prefix, job, source
        self.durable = durable  # confirms each segment on the replicas before its checkpoint
        self.app = app  # sends the chunk tasks by name: the producer never imports the worker
        self.segment_chunks, self.segment_seconds = segment_chunks, segment_seconds
        self.chunk_size = chunk_size or (FORCE_ADD_CHUNK if job.force_add else SUBSCRIBE_CHUNK)
        self.store, self.cursor, self.ts_ns, self.resumed = self._open()

    @property
    def run_id(self) -> str:
        return self.store.run_id

    def _open(self) -> tuple[RunStore, Cursor, int, bool]:
        run_id = _text(self.redis.get(current_run_key(self.prefix, self.job.id)))
        if run_id:
            store = RunStore(self.redis, self.prefix, self.job.id, run_id)
            info = store.progress()
            if info.get("status") == "running" and info.get("source") == self.source.describe():
                mark = orjson.loads(info.get("checkpoint") or "{}")
                cursor = Cursor(mark.get("position", {}), int(mark.get("chunk", 0)),
                                int(mark.get("segment", 0)), int(mark.get("profiles", 0)))
                return store, cursor, int(info["ts_ns"]), True
        return self._new()

    def _new(self) -> tuple[RunStore, Cursor, int, bool]:
        run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        store = RunStore(self.redis, self.prefix, self.job.id, run_id)
        ts_ns = self.source.snapshot_ns()
        total = self.source.total()
        fields: dict[str, str | int] = {"status": "running", "source": self.source.describe(),
                                  "started_at": f"{time.time():.3f}", "ts_ns": ts_ns,
                                  "chunk_size": self.chunk_size, "segments": 0, "dispatched": 0,
                                  "profiles_dispatched": 0, "dispatch_done": 0}
        if total is not None:
            fields["total"] = total
        pipe = self.redis.pipeline()
        pipe.hset(store.key, mapping=fields)  # type: ignore[arg-type]  # invariant Mapping
        pipe.expire(store.key, RUN_TTL)
        pipe.set(current_run_key(self.prefix, self.job.id), run_id)
        pipe.set(last_run_key(self.prefix, self.job.id), run_id)
        pipe.execute()
        return store, Cursor({}), ts_ns, False

    def run(self) -> RunStore:
        """Read the whole source, dispatching as it goes; the last segment finalizes."""
        buffer: list[dict[str, Any]] = []
        left_out: Counter[str] = Counter()
        segment: list[int] = []
        opened = time.monotonic()
        position = self.cursor.position
        people_cap = self.chunk_size * PEOPLE_PER_CHUNK
        for member in self.source.members(self.cursor.position):
            if member.omitted:
                left_out[member.omitted] += 1
            else:
                buffer.append(member.wire(self.ts_ns))
            position = member.position
            if len(buffer) < self.chunk_size and len(buffer) + left_out.total() < people_cap:
                continue
            segment.append(self._save(buffer, left_out))
            buffer, left_out = [], Counter()
            aged = time.monotonic() - opened > self.segment_seconds
            if len(segment) >= self._segment_target() or aged:
                self._dispatch(segment, position)
                segment, opened = [], time.monotonic()
        if buffer or left_out:
            segment.append(self._save(buffer, left_out))
        if segment:
            self._dispatch(segment, position)
        self.redis.hset(self.store.key, "dispatch_done", 1)
        self.store.try_finalize()
        return self.store

    def _task(self, name: str, number: int) -> Any:
        """A signature of a backfill task (by its name) for chunk or segment ``number``."""
        return self.app.signature(name, args=(self.job.id, self.run_id, number),
                                  queue=names.BACKFILL)

    def _segment_target(self) -> int:
        """Chunks per segment: 1, 2, 4, ... up to ``segment_chunks``, so workers start at once."""
        return min(self.segment_chunks, 1 << min(self.cursor.segment, 16))

    def _save(self, rows: list[dict[str, Any]], left_out: Counter[str]) -> int:
        n = self.cursor.chunk
        self.store.save_chunk(n, rows, dict(left_out))
        self.cursor.chunk += 1
        self.cursor.profiles += len(rows) + left_out.total()
        return n

    def _dispatch(self, numbers: list[int], position: dict[str, Any]) -> None:
        seg = self.cursor.segment
        header = [self._task(names.BACKFILL_CHUNK, n) for n in numbers]
        chord(header, app=self.app)(self._task(names.BACKFILL_SEGMENT, seg))
        if self.durable is not None:
            self.durable.confirm()  # NotReplicated: the checkpoint stays before this segment
        self.cursor.segment += 1
        self.cursor.position = position
        mark = {"position": position, "chunk": self.cursor.chunk, "segment": self.cursor.segment,
                "profiles": self.cursor.profiles}
        fields: dict[str, str | int] = {"checkpoint": orjson.dumps(mark).decode(),
                                  "segments": self.cursor.segment, "dispatched": self.cursor.chunk,
                                  "profiles_dispatched": self.cursor.profiles}
        total = self.source.total()
        if total is not None:
            fields["total"] = total
        self.redis.hset(self.store.key, mapping=fields)  # type: ignore[arg-type]


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")
