"""``klaviyo-export pause|resume|stop JOB``: an operator holds, releases or ends a job.

- ``pause``: events keep being recorded, nothing is sent to Klaviyo until ``resume``.
- ``resume``: the pending changes are applied (a flush is queued at once).
- ``stop``: nothing is recorded or sent any more and the job's state is forgotten (desired
  state, counters, dead letters, an unfinished backfill); the Klaviyo list is kept as it is.
  ``start JOB`` begins the job again from nothing.
"""

from __future__ import annotations

import argparse

from console.cli import UserError
from console.commands.start import engine_schedule_flush, known_job
from core import redisconn
from core.keys import JobKeys
from core.settings import load_settings
from worker.engine import lifecycle
from worker.state.jobstate import JobStateStore, Status

HELP = {
    "pause": "stop sending a job's changes to Klaviyo (events are still recorded)",
    "resume": "send a paused job's pending changes and carry on",
    "stop": "stop a job and forget its state (the Klaviyo list is kept)",
}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for verb, text in HELP.items():
        parser = sub.add_parser(verb, help=text, description=text[0].upper() + text[1:] + ".")
        parser.add_argument("job", metavar="JOB", help="the export job's id")
        parser.set_defaults(func=run, verb=verb)


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    known_job(args.job, settings)
    client = redisconn.client(settings, socket_connect_timeout=3)
    store = JobStateStore(client, JobKeys(settings.key_prefix, args.job))
    return _apply(args.verb, store)


def _apply(verb: str, store: JobStateStore) -> int:
    job_id = store.keys.job_id
    status = store.status()
    if verb == "pause":
        if status is Status.STOPPED:
            raise UserError(f"job {job_id!r} is stopped: `start` it first")
        lifecycle.pause(store)
        print(f"{job_id}: paused; events are recorded, nothing is sent to Klaviyo "
              f"(`klaviyo-export resume {job_id}` to carry on)")
    elif verb == "resume":
        if status is Status.STOPPED:
            raise UserError(f"job {job_id!r} is stopped: `klaviyo-export start {job_id}` "
                            "begins it again")
        if status is not Status.PAUSED:
            print(f"{job_id}: not paused ({status.value}); nothing to resume")
            return 0
        pending = lifecycle.resume(store, engine_schedule_flush)
        print(f"{job_id}: resumed; {pending:,} pending user(s) being applied")
    else:
        list_id = store.get().list_id
        forgotten = lifecycle.stop(store)
        print(f"{job_id}: stopped; its state is forgotten ({forgotten:,} key(s)); list "
              f"{list_id or '-'} is kept in Klaviyo (`klaviyo-export start {job_id}` begins "
              "again)")
    return 0
