"""``klaviyo-export jobs list|validate``: show the export jobs, or check the jobs file and keys."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from core.jobs import ExportJob, JobsFileError, check_keys, load_jobs
from core.settings import load_settings

HEADER = ("ID", "LABEL", "AUDIENCES", "LIST", "MODE", "BACKFILL")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("jobs", help="list or validate the export jobs (EXPORT_JOBS_FILE)",
                            description="List the export jobs, or validate the jobs file and keys.")
    actions = parser.add_subparsers(dest="jobs_command", metavar="ACTION", required=True)
    actions.add_parser("list", help="one row per job: audiences, list, mode, backfill",
                       description="Show every job of EXPORT_JOBS_FILE as a table.",
                       ).set_defaults(func=run_list)
    actions.add_parser("validate", help="check the jobs file and each job's Klaviyo key",
                       description="Load EXPORT_JOBS_FILE and check every job's Klaviyo key; "
                                   "exit 1 on any problem.").set_defaults(func=run_validate)


def row(job: ExportJob) -> tuple[str, ...]:
    """The table cells for one job."""
    target = job.list_id or f"new: {job.list_name()}"
    return (job.id, job.label or "-", ", ".join(job.audiences), target, mode(job),
            "yes" if job.backfill else "no")


def mode(job: ExportJob) -> str:
    """How the job puts people on the list: ``force-add``, or ``subscribe`` with its channels
    when not email alone, and ``historical`` for a historical import."""
    if job.force_add:
        return "force-add"
    details = [] if job.channels == ("email",) else ["+".join(job.channels)]
    if job.historical_import:
        details.append(f"historical, no date: {job.without_consent_date}")
    return "subscribe" + (f" ({'; '.join(details)})" if details else "")


def table(rows: Sequence[tuple[str, ...]]) -> str:
    """Left-aligned columns separated by two spaces."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


def run_list(args: argparse.Namespace) -> int:
    jobs = load_jobs(load_settings().export_jobs_file)
    print(table([HEADER, *(row(job) for job in jobs.jobs)]))
    return 0


def run_validate(args: argparse.Namespace) -> int:
    try:
        jobs = load_jobs(load_settings().export_jobs_file)
    except JobsFileError as exc:
        problems = [str(exc)]
    else:
        problems = check_keys(jobs)
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"ok: {len(jobs.jobs)} jobs")
    return 0
