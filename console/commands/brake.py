"""``klaviyo-export brake status|release JOB``: the brake on mass removals.

When a job is about to remove more than ``removal_brake`` of its list within
``removal_brake_window_seconds`` (an audience broken in Lytics empties it), its removals wait
and its enters keep flowing (:mod:`worker.state.brake`). ``status`` shows the brake;
``release`` lets the held removals go (and removals pass for one window), then asks for a
flush. Named ``brake release`` rather than ``resume`` so it never shadows pausing and
resuming a whole job.
"""

from __future__ import annotations

import argparse
import json

from console.commands.start import known_job
from core import names
from core.settings import load_settings
from worker import runtime
from worker.celery_app import create_app
from worker.state.brake import RemovalBrake, policy_of


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("brake", help="show or release a job's brake on mass removals")
    parser.add_argument("action", choices=("status", "release"))
    parser.add_argument("job", metavar="JOB", help="the export job's id")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=run)


def brake_words(state: dict[str, object]) -> str:
    """The brake's state in one phrase (``status`` uses it too)."""
    if not state.get("held"):
        return "brake off: removals flow"
    return (f"REMOVALS HELD by the brake: {state['wanted']} of {state['of']} wanted off the list "
            f"within the window, {state['waiting']} people waiting; "
            "release with `klaviyo-export brake release JOB`")


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    job = known_job(args.job, settings)
    brake = RemovalBrake(runtime.redis_client(), runtime.job_keys(job.id), policy_of(job))
    if args.action == "release":
        released = brake.release()
        app = create_app(settings)
        try:
            app.send_task(names.FLUSH, args=(job.id,), queue=names.REALTIME,
                          ignore_result=True)
        finally:
            app.close()
        print(f"{job.id}: brake released: {released} held removal(s) go ahead; "
              f"removals pass unchecked for {job.removal_brake_window_seconds:.0f}s")
        return 0
    state = brake.state()
    print(json.dumps(state) if args.json else f"{job.id}: {brake_words(state)}")
    return 0
