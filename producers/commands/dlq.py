"""``klaviyo-export dlq list|replay|purge JOB``: the profiles Klaviyo refused, and why."""

from __future__ import annotations

import argparse
import json
import time

import redis

from producers.cli import UserError
from worker.celery_app import create_app
from worker.deadletter import DeadLetterStore
from worker.jobs import load_jobs
from worker.keys import JobKeys
from worker.settings import load_settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("dlq", help="list, replay or purge a job's dead letters")
    parser.add_argument("action", choices=("list", "replay", "purge"))
    parser.add_argument("job", help="job id")
    parser.add_argument("--limit", type=int, default=50, help="how many to list (default 50)")
    parser.add_argument("--json", action="store_true", help="print JSON lines")
    parser.set_defaults(func=run)


def replay(client: redis.Redis, store: DeadLetterStore, keys: JobKeys) -> int:
    """Put dead-lettered users back in pending: the next flush applies their *current* state."""
    letters = store.take_all()
    emails = sorted({d.email for d in letters if d.email})
    if emails:
        client.zadd(keys.pending, dict.fromkeys(emails, int(time.time() * 1000)), nx=True)
        app = create_app(load_settings())
        app.send_task("export.flush", args=(keys.job_id,), queue="realtime", ignore_result=True)
    return len(emails)


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    jobs = load_jobs(settings.export_jobs_file)
    if args.job not in {j.id for j in jobs.jobs}:
        raise UserError(f"no job {args.job!r} in {settings.export_jobs_file}")
    client = redis.Redis.from_url(str(settings.redis_url), socket_connect_timeout=3)
    store = DeadLetterStore(client, settings.key_prefix, args.job)
    try:
        if args.action == "list":
            for letter in store.list(args.limit):
                shown = letter.masked()
                print(
                    json.dumps(shown)
                    if args.json
                    else f"{shown['at']} {shown['email']} [{shown['source']}] {shown['reason']}"
                )
            print(f"{store.size()} dead letter(s) for {args.job}")
        elif args.action == "replay":
            print(
                f"replayed {replay(client, store, JobKeys(settings.key_prefix, args.job))} user(s)"
            )
        else:
            print(f"purged {store.purge()} dead letter(s)")
    except redis.RedisError as exc:
        raise UserError(f"cannot reach Redis at REDIS_URL: {exc}") from None
    return 0
