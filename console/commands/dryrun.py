"""``klaviyo-export start JOB --dry-run``: what starting would do, with reads only.

Reads the source the way the backfill would (same readers, same chunks, same omissions) and
hands the chunks to :mod:`worker.engine.dryrun`, which applies the record and flush rules to
the desired state without writing; the list is found, never created; the flows adding people
to it triggers are read from Klaviyo. Nothing is sent to Klaviyo but ``GET`` calls, and
nothing is written to Redis but the shared limiter's charges for those reads.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from core.chunks import Chunk, ChunkRow
from core.jobs import ExportJob
from core.settings import Settings
from producers.backfill.producer import FORCE_ADD_CHUNK, SUBSCRIBE_CHUNK, Source
from worker import runtime
from worker.engine import dryrun
from worker.state.jobstate import JobStateStore, opt_in_words


def chunks(job: ExportJob, source: Source) -> Iterator[Chunk]:
    """The source's people in the chunks the backfill would store."""
    size = FORCE_ADD_CHUNK if job.force_add else SUBSCRIBE_CHUNK
    ts_ns = source.snapshot_ns()
    rows: list[ChunkRow] = []
    left_out: Counter[str] = Counter()
    for member in source.members({}):
        if member.omitted:
            left_out[member.omitted] += 1
        else:
            rows.append(ChunkRow.model_validate(member.wire(ts_ns)))
        if len(rows) >= size:
            yield Chunk(rows=rows, omitted=dict(left_out))
            rows, left_out = [], Counter()
    if rows or left_out:
        yield Chunk(rows=rows, omitted=dict(left_out))


def dry_run(job: ExportJob, source: Source | None, settings: Settings) -> dict[str, Any]:
    """The list, its flows and the start's counts, as plain data."""
    store = runtime.redis_client()
    keys = runtime.job_keys(job.id)
    client = runtime.klaviyo(job)
    known = JobStateStore(store, keys).get().list_id
    target = dryrun.resolve_list(job, known, client)
    found: dict[str, Any] = {
        "job": job.id, "dry_run": True,
        "list": {"id": target.list_id, "name": target.name, "created": target.created,
                 "opt_in_process": target.opt_in_process or "double_opt_in",
                 # what the job asks of a list it creates; an existing list keeps its own
                 "opt_in_requested": job.opt_in_process if target.created else None},
        "flows": list(target.flows),
        "source": source.describe() if source is not None else None,
    }
    if source is not None:
        plan = dryrun.plan_start(job, chunks(job, source), store, keys, client.account)
        found["plan"] = plan.as_dict(job, settings.rate_limit_headroom)
    return found


def describe(found: dict[str, Any]) -> str:
    """The dry run for people."""
    lst = found["list"]
    words = opt_in_words(lst["opt_in_process"])
    head = (f"{found['job']}: DRY RUN, nothing sent: would create list {lst['name']!r} "
            f"({words}{', the account default' if lst['opt_in_requested'] is None else ''})"
            if lst["created"] else
            f"{found['job']}: DRY RUN, nothing sent: would use list {lst['id']} "
            f"{lst['name']!r} ({words})")
    lines = [head]
    if found["flows"]:
        names = ", ".join(f"{f['name']} ({f['status']})" for f in found["flows"])
        lines.append(f"flows triggered by adding people to it: {names}")
    else:
        lines.append("flows triggered by adding people to it: none")
    plan = found.get("plan")
    if plan is None:
        lines.append("backfill = false: nobody would be exported now")
        return "\n".join(lines)
    mode = "force_add" if "force_add" in plan else "subscribe"
    verb = "force-add" if mode == "force_add" else "subscribe"
    lines.append(f"from {found['source']}: {plan['people']:,} people: {verb} {plan[mode]:,}, "
                 f"refresh {plan['refresh']:,}, remove {plan['remove']:,}, "
                 f"already there {plan['unchanged']:,}, omitted {plan['omitted_total']:,}"
                 + (f" {plan['omitted']}" if plan["omitted"] else ""))
    lines.append(f"of those to {verb}, {plan['known_profiles']:,} have a Klaviyo profile this "
                 "job has seen; the others may be new profiles (Klaviyo is not asked)")
    calls = ", ".join(f"{n:,} {name}" for name, n in plan["calls"].items()) or "no calls"
    lines.append(f"Klaviyo calls: {calls}; the limits imply at least {plan['seconds']:.1f}s")
    return "\n".join(lines)
