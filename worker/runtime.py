"""Per-process resources the tasks share: settings, Redis, jobs, limiter, Klaviyo clients.

Each is built once per process (prefork children build their own after the fork)
and the jobs file is re-read when it changes on disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import redis

from worker.jobs import ExportJob, JobsFile, load_jobs
from worker.keys import JobKeys
from worker.klaviyo.client import KlaviyoClient, client_for
from worker.ratelimit import RateLimiter
from worker.settings import load_settings


@dataclass
class _JobsCache:
    path: Path | None = None
    mtime: float = -1.0
    jobs: JobsFile | None = None


_jobs_cache = _JobsCache()


@lru_cache(maxsize=1)
def redis_client() -> redis.Redis:
    settings = load_settings()
    return redis.Redis.from_url(
        str(settings.redis_url),
        socket_timeout=10,
        socket_connect_timeout=5,
        health_check_interval=30,
    )


def jobs() -> JobsFile:
    """The jobs file, re-read when its modification time changes."""
    path = load_settings().export_jobs_file
    mtime = path.stat().st_mtime if path.exists() else -1.0
    if _jobs_cache.jobs is None or _jobs_cache.path != path or _jobs_cache.mtime != mtime:
        _jobs_cache.jobs, _jobs_cache.path, _jobs_cache.mtime = load_jobs(path), path, mtime
    return _jobs_cache.jobs


def job(job_id: str) -> ExportJob:
    return jobs().get(job_id)


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


def klaviyo(export_job: ExportJob) -> KlaviyoClient:
    """The process's one Klaviyo client for this job's key."""
    s = load_settings()
    return client_for(
        export_job.api_key(),
        base_url=str(s.klaviyo_base_url).rstrip("/"),
        revision=s.klaviyo_revision,
        connect_timeout=s.http_connect_timeout,
        read_timeout=s.http_read_timeout,
    )
