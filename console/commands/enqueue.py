"""``klaviyo-export enqueue JOB --from-file PATH``: queue webhook bodies saved as JSON lines.

Each line is parsed exactly as the receiver parses a request body. Every line is
checked before anything is sent; a bad line stops the command with its number.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

from celery import Celery

from console.cli import UserError
from core import redisconn
from core.dispatch import send_events
from core.events import AudienceEvent
from core.jobs import ExportJob, load_jobs
from core.settings import Settings, load_settings
from producers.lytics import ParsedBody, PayloadError, parse_body, parse_json
from producers.webhook.app import BROKER_ERRORS
from worker.celery_app import create_app as create_celery_app

CHUNK = 1000  # events per send_events call: the size of Lytics' largest batch


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("enqueue", help="queue saved webhook bodies (JSON lines) for a job",
                            description="Validate every line of PATH as a Lytics webhook body, "
                                        "then queue the events for JOB.")
    parser.add_argument("job", metavar="JOB", help="the export job's id")
    parser.add_argument("--from-file", required=True, metavar="PATH",
                        help="one webhook body per line ('-' reads stdin)")
    parser.set_defaults(func=run)


def read_lines(path: str) -> Iterator[tuple[int, bytes]]:
    """(line number, line) for every non-blank line of ``path``."""
    try:
        data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    for number, line in enumerate(data.splitlines(), start=1):
        if line.strip():
            yield number, line


def parse_file(path: str, job: ExportJob) -> list[ParsedBody]:
    """Every line parsed, or a UserError naming the first bad line."""
    parsed = []
    for number, line in read_lines(path):
        try:
            parsed.append(parse_body(parse_json(line), job))
        except PayloadError as exc:
            raise UserError(f"{path}:{number}: {exc.message}") from None
    return parsed


def send_all(app: Celery, job_id: str, events: list[AudienceEvent]) -> int:
    """Publish in chunks; return the number of messages sent."""
    messages = 0
    for start in range(0, len(events), CHUNK):
        try:
            messages += send_events(app, job_id, events[start:start + CHUNK])
        except BROKER_ERRORS:
            raise UserError(f"cannot reach Redis (REDIS_URL) after queuing {start:,} of "
                            f"{len(events):,} events; running the command again is safe") from None
    return messages


def check_redis(settings: Settings) -> None:
    """Fail fast, with nothing queued, when the broker does not answer."""
    client = redisconn.client(settings, socket_connect_timeout=2)
    try:
        client.ping()
    except BROKER_ERRORS:
        raise UserError("cannot reach Redis (REDIS_URL); nothing was queued") from None
    finally:
        client.close()


def find_job(job_id: str) -> ExportJob:
    jobs = load_jobs(load_settings().export_jobs_file)
    try:
        return jobs.get(job_id)
    except KeyError:
        known = ", ".join(job.id for job in jobs.jobs)
        raise UserError(f"no export job {job_id!r} (jobs: {known})") from None


def run(args: argparse.Namespace) -> int:
    job = find_job(args.job)
    parsed = parse_file(args.from_file, job)
    events = [event for body in parsed for event in body.events]
    check_redis(load_settings())
    messages = send_all(create_celery_app(load_settings()), job.id, events)
    ignored = sum(body.ignored for body in parsed)
    bodies = sum(body.bodies for body in parsed)
    print(f"enqueued {len(events):,} events for job {job.id!r} in {messages:,} messages "
          f"({ignored:,} ignored, {bodies:,} bodies, {len(parsed):,} lines)")
    return 0
