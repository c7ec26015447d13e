"""``klaviyo-export status [JOB] [--json]``: what each job did, in numbers."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

import redis

from console.cli import UserError
from console.commands.brake import brake_words
from core import redisconn
from core.jobs import ExportJob, load_jobs
from core.keys import JobKeys
from core.settings import load_settings
from producers.backfill import progress as backfill_progress
from worker.state.audits import AuditStore
from worker.state.brake import RemovalBrake, policy_of
from worker.state.counters import JobCounters
from worker.state.desired import DesiredState
from worker.state.jobstate import HELD, JobStateStore, opt_in_words

DOUBLE = "double_opt_in"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("status", help="show each job's list, state and counters")
    parser.add_argument("job", nargs="?", help="one job id (default: every job)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)


def job_status(
    client: redis.Redis, prefix: str, job_id: str, on_exit: str = "remove",
    *, force_add: bool = False, job: ExportJob | None = None,
    audiences: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Everything ``status`` shows for one job, as plain data (``on_exit``, ``force_add`` and
    ``audiences`` from the jobs file, audiences not yet backfilled named; ``job`` for its
    brake)."""
    keys = JobKeys(prefix, job_id)
    state = JobStateStore(client, keys).get()
    known = state.audiences
    added = [a for a in audiences or () if known is not None and a not in known]
    counters = JobCounters(client, prefix, job_id).snapshot()
    desired = DesiredState(client, keys)
    return {
        "job": job_id,
        "status": state.status.value,
        "list_id": state.list_id,
        "opt_in_process": state.opt_in_process,
        "opt_in_note": state.opt_in_note,
        "on_exit": on_exit,
        "force_add": force_add,
        "reason": state.reason,
        "audiences_not_backfilled": added,
        "pending": desired.pending_count(),
        "inflight": desired.inflight_count(),
        "awaiting_profile": desired.waiting_count(),
        "drift_users": desired.drift_count(),
        **counters.as_dict(),
        "backfill": _backfill(client, prefix, job_id),
        "audit": _audit(client, keys),
        "audit_recent_extra": AuditStore(client, keys).recent_extra(),
        "brake": RemovalBrake(client, keys, policy_of(job)).state() if job else None,
    }


def _audit(client: redis.Redis, keys: JobKeys) -> dict[str, Any] | None:
    """The last audit's counts (``klaviyo-export audit``), without its samples."""
    last = AuditStore(client, keys).last()
    if last is None:
        return None
    breakdown = {side: {k: v["count"] for k, v in kinds.items()}
                 for side, kinds in last["breakdown"].items()}
    return {k: last[k] for k in ("at", "missing", "extra", "actionable", "in_transit")} | {
        "breakdown": breakdown}


def _backfill(client: redis.Redis, prefix: str, job_id: str) -> dict[str, Any] | None:
    run = backfill_progress.latest(client, prefix, job_id)
    return None if run is None else {**asdict(run), "text": backfill_progress.describe(run)}


def _line(row: dict[str, Any]) -> str:
    omitted = row.get("omitted") or {}
    parts = [
        f"{row['job']}: {row['status'].upper() if row['status'] in HELD else row['status']}",
        f"list {row['list_id'] or '-'}"
        + (f" ({opt_in_words(row['opt_in_process'])})" if row["list_id"] else ""),
        *(["exits kept on the list (on_exit = keep)"] if row.get("on_exit") == "keep" else []),
        *_added(row),
        f"removed {row['removed']}",
        f"omitted {sum(omitted.values())}" + (f" {omitted}" if omitted else ""),
        f"failed {row['failed']}",
        *([f"fields dropped {row['dropped']}"] if row.get("dropped") else []),
        f"dead-lettered {row['dead_lettered']}",
        f"pending {row['pending']}",
    ]
    if row.get("audiences_not_backfilled"):
        parts.append("audiences added since the last start (`start` backfills them): "
                     + ", ".join(row["audiences_not_backfilled"]))
    if row.get("awaiting_profile"):
        parts.append(f"removals awaiting a profile {row['awaiting_profile']}")
    for name in ("drift", "clamped"):
        if row.get(name):
            parts.append(f"{name} {sum(row[name].values())} {row[name]}")
    if row.get("backfill"):
        parts.append(row["backfill"]["text"])
    if row.get("audit"):
        found = row["audit"]
        parts.append(f"audit: missing {found['missing']}, extra {found['extra']} "
                     f"({found['actionable']} out of place)")
    if row.get("audit_recent_extra"):
        recent = row["audit_recent_extra"]
        parts.append(f"recent joiners in no audience {sum(recent.values())} {recent}")
    if (row.get("brake") or {}).get("held"):
        parts.append(brake_words(row["brake"]).replace("JOB", row["job"]))
    if row.get("opt_in_note"):
        parts.append(f"WARNING: {row['opt_in_note']}")
    if row.get("reason"):
        parts.append(f"reason: {row['reason']}")
    if row.get("last_error"):
        parts.append(f"last error: {row['last_error']}")
    return ", ".join(parts)


def _added(row: dict[str, Any]) -> list[str]:
    """``added`` alone; on a double opt-in list confirmed and awaiting apart (exported people
    are both: awaiting ones join the list only once they confirm Klaviyo's email)."""
    waiting = int(row.get("awaiting_confirmation") or 0)
    confirming = row.get("opt_in_process") == DOUBLE and not row.get("force_add")
    if not confirming and not waiting:
        return [f"added {row['added']}"]
    return [f"added {row['added']} (confirmed)", f"awaiting confirmation {waiting}"]


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    jobs = load_jobs(settings.export_jobs_file)
    ids = [j.id for j in jobs.jobs]
    if args.job and args.job not in ids:
        raise UserError(
            f"no job {args.job!r} in {settings.export_jobs_file} (jobs: {', '.join(ids)})"
        )
    client = redisconn.client(settings, socket_connect_timeout=3)
    rows = [
        job_status(client, settings.key_prefix, j.id, j.on_exit,
                   force_add=j.force_add, job=j, audiences=j.audiences)
        for j in jobs.jobs
        if not args.job or j.id == args.job
    ]
    print(json.dumps(rows, indent=2) if args.json else "\n".join(_line(r) for r in rows))
    return 0
