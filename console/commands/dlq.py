"""``klaviyo-export dlq list|replay|purge JOB``: the profiles Klaviyo refused, and why.

``replay`` gives every letter a second chance by the path it failed on. A letter that holds
its event (a record message set aside: poisoned, unknown job, recording failed) is recorded
again: the event goes back as an ``audience.*`` task and is normalised, ordered by its own
time and flushed like any other. A letter without one (a user Klaviyo refused) puts the user
back in pending, so the next flush applies their *current* desired state.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence

import redis
from celery import Celery
from pydantic import ValidationError

from console.cli import UserError
from console.progress import Reporter
from core import names, redisconn
from core.dispatch import send_events
from core.events import AudienceEvent
from core.jobs import load_jobs
from core.keys import JobKeys
from core.settings import load_settings
from worker.celery_app import create_app
from worker.state.deadletter import DeadLetter, DeadLetterStore

EVENTS_PER_MESSAGE = 1000


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("dlq", help="list, replay or purge a job's dead letters")
    parser.add_argument("action", choices=("list", "replay", "purge"))
    parser.add_argument("job", help="job id")
    parser.add_argument("--limit", type=int, default=50, help="how many to list (default 50)")
    parser.add_argument("--json", action="store_true", help="print JSON lines")
    parser.set_defaults(func=run)


Progressed = Callable[[int, int], None]  # (letters replayed so far, letters to replay)


def replay(client: redis.Redis, store: DeadLetterStore, keys: JobKeys,
           progressed: Progressed | None = None) -> int:
    """Re-record stored events, re-pend the other users; return how many letters were replayed.

    Letters whose stored event is not a valid event are put back (and not counted): a replay
    never loses a letter.
    """
    letters = store.take_all()
    events, unreadable = _stored_events(letters)
    emails = sorted({d.email for d in letters if d.event is None and d.email})
    if unreadable:
        store.put_back(unreadable)
    if not (events or emails):
        return 0
    app = create_app(load_settings())
    total = len(events) + len(emails)
    tell = progressed or (lambda _done, _total: None)
    try:
        for start in range(0, len(events), EVENTS_PER_MESSAGE):
            send_events(app, keys.job_id, events[start:start + EVENTS_PER_MESSAGE])
            tell(min(start + EVENTS_PER_MESSAGE, len(events)), total)
        if emails:
            client.zadd(keys.pending, dict.fromkeys(emails, int(time.time() * 1000)), nx=True)
            _send_flush(app, keys.job_id)
        tell(total, total)
    except BaseException:
        # keep every letter rather than guess which were sent: recording twice is harmless
        store.put_back([d for d in letters if d not in unreadable])
        raise
    finally:
        app.close()
    return len(events) + len(emails)


def _stored_events(letters: Sequence[DeadLetter]) -> tuple[list[AudienceEvent], list[DeadLetter]]:
    """The letters' events, parsed; and the letters whose event does not parse."""
    events, unreadable = [], []
    for letter in letters:
        if letter.event is None:
            continue
        try:
            events.append(AudienceEvent.from_wire(letter.event))
        except ValidationError:
            unreadable.append(letter)
    return events, unreadable


def _send_flush(app: Celery, job_id: str) -> None:
    app.send_task(names.FLUSH, args=(job_id,), queue=names.REALTIME, ignore_result=True)


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    jobs = load_jobs(settings.export_jobs_file)
    if args.job not in {j.id for j in jobs.jobs}:
        raise UserError(f"no job {args.job!r} in {settings.export_jobs_file}")
    client = redisconn.client(settings, socket_connect_timeout=3)
    store = DeadLetterStore(client, settings.key_prefix, args.job)
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
        with Reporter(f"dlq replay {args.job}", store.size(), sys.stdout,
                      unit="letters") as bar:
            replayed = replay(client, store, JobKeys(settings.key_prefix, args.job),
                              bar.update)
        print(f"replayed {replayed} dead letter(s); {store.size()} left")
    else:
        print(f"purged {store.purge()} dead letter(s)")
    return 0
