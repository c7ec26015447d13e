"""Per-process resources the tasks share: settings, Redis, jobs, limiter, Klaviyo clients.

Each is built once per process (prefork children build their own after the fork)
and the jobs file is re-read when it changes on disk; a change that does not load leaves
the last good file in force (:mod:`core.jobswatch`) and is reported by :func:`jobs_problem`.
"""

from __future__ import annotations

from functools import lru_cache

import redis

from core import redisconn
from core.jobs import ExportJob, JobsFile, JobsFileError, UnknownJobError
from core.jobswatch import JobsWatcher
from core.keys import JobKeys
from core.metrics import CallRecorder
from core.settings import load_settings
from worker.klaviyo.client import KlaviyoClient, client_for
from worker.limits.failover import Fence
from worker.limits.gate import LIVE_RESERVE, Gate
from worker.limits.ratelimit import RateLimiter

_watchers: dict[str, JobsWatcher[JobsFile]] = {}


@lru_cache(maxsize=1)
def redis_client() -> redis.Redis:
    settings = load_settings()
    return redisconn.client(
        settings,
        socket_timeout=10,
        socket_connect_timeout=5,
        health_check_interval=30,
    )


def _watcher() -> JobsWatcher[JobsFile]:
    path = load_settings().export_jobs_file
    key = str(path)
    if key not in _watchers:
        _watchers[key] = JobsWatcher(path, lambda loaded: loaded)
    return _watchers[key]


def jobs() -> JobsFile:
    """The jobs file in force: re-read when it changes, the last good one while it is bad.

    Raises :class:`JobsFileError` when no version of the file has loaded in this process.
    """
    return _watcher().current()


def jobs_problem() -> str | None:
    """Why the jobs file on disk is not in force (None when it is)."""
    return _watcher().problem


def job(job_id: str) -> ExportJob:
    """The job ``job_id`` of the file in force.

    :class:`UnknownJobError` means the file on disk loads and has no such job: the job is
    gone. While the file is bad a missing job is only unknown *so far* (it may be the job
    being added), so that is a :class:`JobsFileError`, which callers treat as transient.
    """
    current = jobs()
    try:
        return current.get(job_id)
    except UnknownJobError:
        problem = jobs_problem()
        if problem is None:
            raise
        raise JobsFileError(f"job {job_id!r} is not in the jobs file in force: {problem}") from None


def job_keys(job_id: str) -> JobKeys:
    return JobKeys(load_settings().key_prefix, job_id)


@lru_cache(maxsize=1)
def limiter() -> RateLimiter:
    s = load_settings()
    return RateLimiter(
        redis_client(),
        prefix=s.key_prefix,
        headroom=s.rate_limit_headroom,
        speed=s.rate_limit_speed,
    )


@lru_cache(maxsize=1)
def fence() -> Fence | None:
    """The limiter's failover fence (worker/limits/failover.py): with Sentinel only."""
    s = load_settings()
    if not s.redis_target.is_sentinel:
        return None
    return Fence(redis_client(), prefix=s.key_prefix, speed=s.rate_limit_speed)


def klaviyo(export_job: ExportJob, *, background: bool = False) -> KlaviyoClient:
    """The process's one Klaviyo client for this job's key, every request charged to the
    shared limiter as it is sent and counted for the metrics (``core.metrics``); a
    ``background`` one (a backfill, an attribute drain) leaves live flushes their reserve of
    every window."""
    s = load_settings()
    return client_for(
        export_job.api_key(),
        base_url=str(s.klaviyo_base_url).rstrip("/"),
        revision=s.klaviyo_revision,
        connect_timeout=s.http_connect_timeout,
        read_timeout=s.http_read_timeout,
    ).limited(Gate(limiter(), fence(), reserve=LIVE_RESERVE if background else 0.0)).observed(
        CallRecorder(redis_client(), s.key_prefix))
