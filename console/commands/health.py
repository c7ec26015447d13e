"""``klaviyo-export health [--json] [--require-workers]``: is everything working, right now?

Runs every check of :mod:`worker.ops.health` live: the jobs file loads (a bad one is a failing
``jobs-file`` component naming the error; the per-job checks then have no jobs); Redis
answers; each distinct Klaviyo key is accepted (``get_accounts``, granted by the shared
limiter); each queue's heartbeat is fresh once workers have run; queues and dead letters are
under their thresholds. Exit 0 when healthy, 1 with one line per failing component.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from core import redisconn
from core.jobs import ExportJob, JobsFileError, load_jobs
from core.settings import load_settings
from worker.klaviyo.client import from_settings
from worker.limits.ratelimit import RateLimiter
from worker.ops import health
from worker.ops.schedule import OpsSettings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("health", help="check Redis, Klaviyo, workers, queues, dead letters")
    parser.add_argument("--json", action="store_true", help="print every component as JSON")
    parser.add_argument("--require-workers", action="store_true",
                        help="fail when a queue has never had a heartbeat")
    parser.set_defaults(func=run)


def read_jobs(path: Path) -> tuple[list[ExportJob], health.Component]:
    """The jobs to check, and whether the file loads: a bad file is a finding, not a crash."""
    try:
        jobs = list(load_jobs(path).jobs)
    except JobsFileError as exc:
        return [], health.check_jobs_file(path, str(exc), 0)
    return jobs, health.check_jobs_file(path, None, len(jobs))


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    jobs, jobs_file = read_jobs(settings.export_jobs_file)
    client = redisconn.client(settings, socket_connect_timeout=3, socket_timeout=5)
    limiter = RateLimiter(client, prefix=settings.key_prefix, headroom=settings.rate_limit_headroom,
                          speed=settings.rate_limit_speed)
    results = health.run_checks(client, settings.key_prefix, jobs, client_for=from_settings,
                                limiter=limiter, settings=OpsSettings(),
                                require_workers=args.require_workers, jobs_file=jobs_file)
    bad = health.failing(results)
    if args.json:
        print(json.dumps({"ok": not bad, "components": health.as_dict(results)}, indent=2))
    elif bad:
        print("\n".join(f"unhealthy {c.line()}" for c in bad))
    else:
        print(f"healthy: {len(results)} components ok")
    return 1 if bad else 0
