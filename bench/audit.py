"""Audit throughput: members read back per minute against Klaviyo's list-read ceiling.

    uv run --frozen python -m bench.audit [--members 150000] [--drift 100]

A sandbox at Klaviyo's real limits (speed 1) and a private redis-server; a list of
``--members`` filled through bulk imports (10,000 a call), and a job whose desired state holds
the same people, ``--drift`` of them left off the list and ``--drift`` others on it by hand.
Then ``klaviyo-export audit JOB --json`` as an operator runs it, timed from its start to its
answer. The ceiling: ``get_profiles_for_list`` allows 750 calls a minute of 100 members,
75,000 members a minute, of which the limiter's default headroom (``RATE_LIMIT_HEADROOM``,
0.95) leaves 71,250. :func:`run` is also called by ``bench.run --audit-members``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis
import requests

from bench import ceiling
from bench.stack import ROOT, Redis, Sandbox, services, wait_until
from contract import operations as ops
from core.keys import JobKeys
from core.settings import Settings
from worker.state.codes import APPLIED_IN, ENTER, FIELDS_SEP
from worker.state.desired import pad_ts

KEY = "pk_bench_audit_0123456789"
JOB = "audit-bench"
PREFIX = "baudit"
HEADROOM: float = Settings.model_fields["rate_limit_headroom"].default  # as shipped
IMPORT_CAP = ops.BULK_IMPORT.batch_cap
LIST_READ = ceiling.Limits("list read", ops.GET_LIST_PROFILES.burst,
                           ops.GET_LIST_PROFILES.steady, ops.GET_LIST_PROFILES.max_items or 100)


def ceiling_per_minute(headroom: float = 1.0) -> int:
    """Members a minute the list-read limit admits (100 a call)."""
    op = ops.GET_LIST_PROFILES
    return int(op.steady * headroom) * (op.max_items or 100)


def _fill(sandbox: Sandbox, list_id: str, emails: list[str]) -> None:
    """Put ``emails`` on the list with bulk imports, each waited for."""
    url = f"{sandbox.url}/api/profile-bulk-import-jobs"
    for start in range(0, len(emails), IMPORT_CAP):
        profiles = [{"type": "profile", "attributes": {"email": e}}
                    for e in emails[start:start + IMPORT_CAP]]
        body = {"data": {"type": "profile-bulk-import-job",
                         "attributes": {"profiles": {"data": profiles}},
                         "relationships": {"lists": {"data": [{"type": "list",
                                                               "id": list_id}]}}}}
        while True:
            resp = sandbox_post(sandbox, url, body)
            if resp.status_code != 429:
                break
            time.sleep(float(resp.headers.get("Retry-After", "1")))
        resp.raise_for_status()
        job_id = resp.json()["data"]["id"]

        def done(job_id: str = job_id) -> bool:
            got = sandbox_get(sandbox, f"{url}/{job_id}")
            return got.status_code == 200 and got.json()["data"]["attributes"][
                "status"] == "complete"

        wait_until(done, 300, f"import {job_id}")


def sandbox_post(sandbox: Sandbox, url: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(url, json=body, headers=sandbox.headers(KEY), timeout=120)


def sandbox_get(sandbox: Sandbox, url: str) -> requests.Response:
    return requests.get(url, headers=sandbox.headers(KEY), timeout=60)


def _desired(client: redis.Redis, keys: JobKeys, emails: list[str]) -> None:
    """The job's desired state: each email in the audience, told to Klaviyo."""
    mark = f"{ENTER}:{pad_ts(time.time_ns())}"
    told = f"{APPLIED_IN}{FIELDS_SEP}"
    for start in range(0, len(emails), 10_000):
        pipe = client.pipeline(transaction=False)
        for email in emails[start:start + 10_000]:
            pipe.hset(keys.user(email), "bench", mark)
            pipe.hset(keys.applied, email, told)
        pipe.execute()


def run(workdir: Path, rds: Redis, sandbox: Sandbox, *, members: int,
        drift: int) -> dict[str, Any]:
    """Fill, then audit once; the figures of that audit."""
    list_id = sandbox.create_list(KEY, "audit bench")
    on_list = [f"m{i:07d}@example.com" for i in range(members)]
    by_hand = [f"h{i:05d}@example.com" for i in range(drift)]
    missing = [f"x{i:05d}@example.com" for i in range(drift)]
    print(f"audit bench: filling list {list_id} with {members + drift:,} members", flush=True)
    _fill(sandbox, list_id, on_list + by_hand)
    client = redis.Redis.from_url(rds.url)
    keys = JobKeys(PREFIX, JOB)
    _desired(client, keys, on_list + missing)
    client.hset(keys.state, mapping={"status": "ready", "list_id": list_id,
                                     "opt_in_process": "single_opt_in"})
    jobs_file = workdir / "audit-jobs.toml"
    jobs_file.write_text(f'[[jobs]]\nid = "{JOB}"\naudiences = ["bench"]\n'
                         f'list_id = "{list_id}"\nbackfill = false\n', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KLAVIYO_", "CELERY_"))}
    env |= {"REDIS_URL": rds.url, "KLAVIYO_BASE_URL": sandbox.url, "KLAVIYO_API_KEY": KEY,
            "EXPORT_JOBS_FILE": str(jobs_file), "KEY_PREFIX": PREFIX,
            "RATE_LIMIT_HEADROOM": str(HEADROOM)}
    sandbox.admin("DELETE", "stats")
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "console.cli", "audit", JOB, "--json"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600,
                          check=False)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    summary = json.loads(proc.stdout)
    stats = sandbox.account_stats(KEY)
    reads = stats.get(ops.GET_LIST_PROFILES.name, {})
    per_minute = summary["list_members"] / summary["seconds"] * 60  # the paging itself
    # Klaviyo's windows are fixed: a run touching three minute windows may make up to three
    # windows' calls, so the honest ceiling is what the windows admit over the run (ceiling.py)
    start = summary["read_started_at"]
    admitted = ceiling.max_calls(LIST_READ, start, start + summary["seconds"])
    return {
        "members": summary["list_members"], "pages": summary["pages"],
        "missing": summary["missing"], "extra": summary["extra"],
        "exact": (summary["missing"], summary["extra"]) == (drift, drift),
        "wall_seconds": round(wall, 1), "read_seconds": summary["seconds"],
        "per_minute": round(per_minute), "ceiling": ceiling_per_minute(),
        "ceiling_with_headroom": ceiling_per_minute(HEADROOM),
        "admitted_pages": admitted,
        "share_of_ceiling": round(summary["pages"] / admitted, 3),
        "throttled": int(reads.get("throttled", 0)),
    }


def markdown(res: dict[str, Any]) -> str:
    """The audit's row for docs/benchmarks.md."""
    return (
        "\n## Audit throughput (`klaviyo-export audit`)\n\n"
        "| members | drift found (missing, extra) | paging | whole command | members / minute | "
        "list-read ceiling | pages / pages the windows admit | 429s |\n"
        "|---|---|---|---|---|---|---|---|\n"
        f"| {res['members']:,} | {res['missing']:,}, {res['extra']:,} "
        f"({'exact' if res['exact'] else 'NOT exact'}) | {res['read_seconds']:.1f} s | "
        f"{res['wall_seconds']:.1f} s | "
        f"{res['per_minute']:,} | {res['ceiling']:,} ({res['ceiling_with_headroom']:,} at "
        f"{HEADROOM:.0%} headroom) | {res['pages']:,} / {res['admitted_pages']:,} = "
        f"{res['share_of_ceiling']:.0%} | {res['throttled']} |\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=150_000)
    parser.add_argument("--drift", type=int, default=100)
    args = parser.parse_args(argv)
    with services("bench-audit-") as (workdir, rds, sandbox):
        res = run(workdir, rds, sandbox, members=args.members, drift=args.drift)
    print(json.dumps(res))
    print(markdown(res))
    return 0 if res["exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
