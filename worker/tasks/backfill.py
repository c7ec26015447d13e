"""Celery tasks of a backfill: thin adapters over ``worker.engine.backfill``.

``backfill.chunk`` is a chord header task: it keeps its (tiny, deterministic) result for the
chord, never raises for a bad chunk (it counts it as failed, logged with its traceback), and
retries itself, without limit and without counting a failure, while the limiter throttles
or Redis is briefly unreachable. ``backfill.segment``
is the chord body: it counts the segment for progress. The run is finalized by whichever
step (a chunk's commit, a segment, the producer) first sees dispatch over and every chunk
counted, so a chord callback lost with a killed worker cannot leave the run unfinished.
"""

from __future__ import annotations

from typing import Any

from core import names
from worker.celery_app import app
from worker.engine import backfill
from worker.tasks.export import (
    EngineTask,
    schedule_attributes,
    schedule_background_flush,
    schedule_poll,
)


@app.task(
    name=names.BACKFILL_CHUNK, base=EngineTask, bind=True, queue=names.BACKFILL,
          ignore_result=False, max_retries=None)
def chunk(self: EngineTask, job_id: str, run_id: str, n: int) -> dict[str, Any]:
    """Export one stored chunk of a backfill run; return its counts."""
    attempt = int(self.request.retries or 0)
    outcome = backfill.export_chunk(job_id, run_id, n, schedule_background_flush, schedule_poll,
                                   attempt=attempt, schedule_attributes=schedule_attributes)
    if outcome.result is None:
        raise self.retry(countdown=outcome.again_in, max_retries=None)
    return outcome.result


@app.task(name=names.BACKFILL_SEGMENT, base=EngineTask, queue=names.BACKFILL)
def segment(results: list[Any], job_id: str, run_id: str, seg: int) -> bool:
    """A segment of chunks finished: count it; the last one records the run's summary."""
    return backfill.run_store(job_id, run_id).segment_done(seg)
