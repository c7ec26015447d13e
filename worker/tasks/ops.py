"""Operational tasks run by beat: a heartbeat per queue, the periodic health check and the
refresh of the opt-out mirrors (``worker.engine.optouts``).

``ops.heartbeat`` is sent to each queue and writes ``{prefix}:heartbeat:{queue}`` = now, so a
fresh value proves that some worker is consuming *that* queue, not just that a process lives.
``ops.health`` runs every check of :mod:`worker.ops.health` and stores the results in
``{prefix}:health``; Klaviyo is asked at most once a minute per key, through the limiter.
"""

from __future__ import annotations

import time

from core import names
from core.keys import heartbeat_key
from core.settings import load_settings
from worker import runtime
from worker.celery_app import app
from worker.engine import optouts
from worker.klaviyo.client import from_settings
from worker.ops import health
from worker.state.optouts import OptOutMirror


@app.task(name=names.HEARTBEAT, queue=names.MAINTENANCE, ignore_result=True)
def heartbeat(queue: str) -> float:
    """Prove ``queue`` is consumed: record when a worker last ran this task from it."""
    now = time.time()
    prefix = load_settings().key_prefix
    runtime.redis_client().set(heartbeat_key(prefix, queue), f"{now:.3f}")
    return now


@app.task(name=names.HEALTH, queue=names.MAINTENANCE, ignore_result=True)
def check_health() -> int:
    """Run every health check, store the results; return how many components fail."""
    settings = load_settings()
    prefix = settings.key_prefix
    client = runtime.redis_client()
    jobs = list(runtime.jobs().jobs)
    jobs_file = health.check_jobs_file(settings.export_jobs_file, runtime.jobs_problem(),
                                       len(jobs))
    results = health.run_checks(
        client, prefix, jobs,
        client_for=from_settings, limiter=runtime.limiter(), settings=settings,
        jobs_file=jobs_file,
    )
    health.store(client, prefix, results)
    return len(health.failing(results))


@app.task(name=names.OPTOUTS_REFRESH, queue=names.MAINTENANCE, ignore_result=True)
def refresh_optouts() -> bool:
    """Keep each account's opt-out mirror current; a fill not yet complete runs again soon."""
    redis, prefix = runtime.redis_client(), load_settings().key_prefix
    again = optouts.refresh_accounts(runtime.jobs().jobs, runtime.klaviyo,
                                     lambda account: OptOutMirror(redis, prefix, account))
    if again is not None:
        refresh_optouts.apply_async(countdown=max(again, 0.1), expires=60)
    return again is None
