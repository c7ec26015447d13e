"""``klaviyo-export audit JOB [--repair] [--json]``: read the list back, report and fix drift.

Pages every member of the job's Klaviyo list through the shared limiter (a progress bar on a
terminal, a line every few seconds otherwise, both on stderr), compares them with the job's
desired state and prints the drift by kind (:mod:`worker.engine.audit`). ``--repair`` hands
what the job's policies allow back to the engine and asks for a flush: the workers then
subscribe and remove as they always do. The summary is kept for ``status`` and ``health``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any, TextIO

from console.cli import UserError
from console.commands.start import job_with_list
from console.progress import Reporter
from core import names
from core.settings import load_settings
from worker import runtime
from worker.celery_app import create_app
from worker.engine import audit as engine
from worker.klaviyo.errors import KlaviyoError
from worker.klaviyo.lists import list_profile_count
from worker.state.jobstate import opt_in_words

PLAIN_EVERY_SECONDS = 5.0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("audit", help="read a job's Klaviyo list back and report drift",
                            description="Page the list's members, compare them with the job's "
                                        "desired state and report what is missing and extra.")
    parser.add_argument("job", metavar="JOB", help="the export job's id")
    parser.add_argument("--repair", action="store_true",
                        help="hand the drift back to the engine within the job's policies "
                             "(people added by hand are removed only with mirror = true)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=run)


def progress(total: int | None, out: TextIO, *, what: str = "audit", tty: bool | None = None,
             every: float = PLAIN_EVERY_SECONDS
             ) -> tuple[Callable[[int], None], Callable[[], None]]:
    """A page callback and a close over the one progress owner (:mod:`console.progress`): a
    bar with rate and ETA on a terminal, a plain line every ``every`` seconds elsewhere."""
    bar = Reporter(what, total, out, tty=tty, every=every, unit="members")
    read = [0]

    def on_page(n: int) -> None:
        read[0] += n
        bar.update(read[0])

    return on_page, bar.close


def describe(summary: dict[str, Any]) -> str:
    """The audit's summary as lines for people."""
    rate = summary.get("members_per_minute")
    lines = [
        f"{summary['job']}: list {summary['list_id']} ({opt_in_words(summary['opt_in_process'])})"
        f": {summary['list_members']:,} members read in {summary['seconds']:.1f}s"
        + (f" ({rate:,} a minute)" if rate else "")
        + f"; {summary['desired_members']:,} in the audiences; "
          f"{summary['in_transit']:,} in transit"
        + (f"; {summary['kept']:,} kept (on_exit = keep)" if summary.get("kept") else ""),
    ]
    for side in ("missing", "extra"):
        kinds = summary["breakdown"][side]
        parts = ", ".join(f"{k} {v['count']:,}" for k, v in kinds.items())
        lines.append(f"{side} {summary[side]:,}: {parts}")
        for kind, value in kinds.items():
            if value["sample"]:
                lines.append(f"  {kind}: {', '.join(value['sample'])}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    job, state = job_with_list(args.job)
    client_redis, keys = runtime.redis_client(), runtime.job_keys(job.id)
    klaviyo = runtime.klaviyo(job)
    try:
        total = engine.patiently(lambda: list_profile_count(klaviyo, str(state.list_id)))
        on_page, close = progress(total, sys.stderr, what=f"audit {job.id}")
        try:
            found = engine.run_audit(job, list_id=str(state.list_id),
                                     opt_in_process=state.opt_in_process, client=klaviyo,
                                     store=client_redis, keys=keys, on_page=on_page)
        finally:
            close()
        summary = found.summary()
        if args.repair:
            fixed = engine.repair(found, job, klaviyo, client_redis, keys)
            if fixed.rejoin or fixed.remove:
                _send_flush(job.id)
            summary["repair"] = fixed.as_dict()
    except KlaviyoError as exc:
        raise UserError(f"job {job.id!r}: Klaviyo: {exc}") from None
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(describe(summary))
        if "repair" in summary:
            print(repair_line(summary["repair"]))
    return 0


def repair_line(fixed: dict[str, Any]) -> str:
    left = ", ".join(f"{k} {v:,}" for k, v in fixed["left"].items()) or "nothing"
    return (f"repair: {fixed['rejoin']:,} to subscribe again, {fixed['remove']:,} to remove "
            f"(the workers apply them); left as they are: {left}")


def _send_flush(job_id: str) -> None:
    app = create_app(load_settings())
    try:
        app.send_task(names.FLUSH, args=(job_id,), queue=names.REALTIME, ignore_result=True)
    finally:
        app.close()
