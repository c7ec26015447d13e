"""``klaviyo-export runs JOB [--limit N] [--json]``: the job's run history, newest first.

Each finished backfill (and any other run that records itself, such as an audit) with its
start and end, people, exported, omitted by reason, failures and throughput; an unfinished
backfill is shown first, as ``running``. The history is kept in Redis, bounded
(``core.runs.MAX_HISTORY``).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import redis

from console.commands.start import known_job
from core import redisconn
from core.keys import RunKeys, current_run_key
from core.runs import MAX_HISTORY, history, summary
from core.settings import load_settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("runs", help="list a job's backfills and audits, newest first")
    parser.add_argument("job", metavar="JOB", help="the export job's id")
    parser.add_argument("--limit", type=int, default=20,
                        help=f"how many runs (default 20, at most {MAX_HISTORY} are kept)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of lines")
    parser.set_defaults(func=run)


def runs(client: redis.Redis, prefix: str, job_id: str, limit: int) -> list[dict[str, Any]]:
    """The unfinished backfill (if any), then the finished runs."""
    found = []
    current = client.get(current_run_key(prefix, job_id))
    if current:
        run_id = current.decode() if isinstance(current, bytes) else str(current)
        raw = {_s(k): _s(v) for k, v in client.hgetall(RunKeys(prefix, job_id, run_id).run).items()}
        if raw and raw.get("status") != "finished":
            found.append(summary(run_id, raw))
    return found + history(client, prefix, job_id, limit)


def line(entry: dict[str, Any]) -> str:
    """One run, as an operator reads it."""
    if entry.get("kind") == "audit":
        return _audit_line(entry)
    omitted = entry.get("omitted") or {}
    reasons = ", ".join(f"{k} {v:,}" for k, v in omitted.items())
    counts = [f"profiles {entry.get('profiles', 0):,}", f"exported {entry.get('exported', 0):,}",
              f"omitted {sum(omitted.values()):,}" + (f" ({reasons})" if reasons else ""),
              f"failed {entry.get('failed', 0):,}"]
    if entry.get("per_second") is not None:
        counts.append(f"{entry['per_second']:,.1f}/s")
    when = f"started {_at(entry.get('started_at'))}"
    if entry.get("finished_at"):
        when += f", finished {_at(entry['finished_at'])} ({entry.get('seconds') or 0:.1f} s)"
    extra = f", last error: {entry['last_error']}" if entry.get("last_error") else ""
    return (f"{entry.get('kind', 'run')} {entry.get('run', '?')} {entry.get('status', '')}"
            f" [{entry.get('source', '')}]: {when}; " + ", ".join(counts) + extra)


def _audit_line(entry: dict[str, Any]) -> str:
    counts = [f"members {entry.get('members', 0):,}"]
    for side in ("missing", "extra"):
        kinds = entry.get(f"{side}_by_kind") or {}
        parts = ", ".join(f"{k} {v:,}" for k, v in kinds.items())
        counts.append(f"{side} {entry.get(side, 0):,}" + (f" ({parts})" if parts else ""))
    if entry.get("per_second") is not None:
        counts.append(f"{entry['per_second']:,.1f}/s")
    when = f"started {_at(entry.get('started_at'))}"
    if entry.get("finished_at"):
        when += f", finished {_at(entry['finished_at'])} ({entry.get('seconds') or 0:.1f} s)"
    return (f"audit {entry.get('run', '?')} {entry.get('status', '')}"
            f" [{entry.get('source', '')}]: {when}; " + ", ".join(counts))


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    known_job(args.job, settings)
    client = redisconn.client(settings, socket_connect_timeout=3)
    found = runs(client, settings.key_prefix, args.job, args.limit)
    if args.json:
        print(json.dumps(found, indent=2))
    elif not found:
        print(f"{args.job}: no runs yet")
    else:
        print("\n".join(line(e) for e in found))
    return 0


def _at(epoch: float | None) -> str:
    if not epoch:
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
