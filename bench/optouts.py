"""Subscribe throughput with the opt-out screen and without it, same run, side by side (#15).

Both runs export the same audience through subscribe jobs on an account that holds
``suppressed`` unsubscribed people (not in the audience, so both lists end exact):

- *without*: the job says ``resubscribe = true``, so no subscribe chunk is screened;
- *with*: the default job; the account's opt-out mirror is filled before the clock starts
  (the fill is a one-time cost per account, timed and reported on its own), and every
  subscribe chunk is looked up in it.

The issue's bar: the screened run within 5 % of the unscreened one.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import redis

from bench import ceiling, engine, report
from bench.stack import REVISION, Redis, Sandbox
from sandbox.testing import SandboxClient
from worker.engine.optouts import refresh
from worker.klaviyo.client import KlaviyoClient
from worker.state.optouts import OptOutMirror

UNSUBSCRIBE_BATCH = 100  # bulk_unsubscribe_profiles takes 100 profiles a call
# The bench runs workers without beat: keep a worker from refreshing the mirror itself during
# the run (it would, as beat's stand-in, after 4 periods). Beat's refresh runs on the
# maintenance queue, usually one request per kind: this pair measures the check on the
# subscribe path.
QUIET_REFRESH = {"OPTOUTS_REFRESH_SECONDS": "3600"}


def opted_out(i: int) -> str:
    return f"gone{i:07d}@bench.example"


def unsubscribe_people(sandbox: Sandbox, key: str, count: int) -> None:
    """``count`` people outside the audience unsubscribe through Klaviyo's bulk API."""
    api = SandboxClient(sandbox.url, key)
    for start in range(0, count, UNSUBSCRIBE_BATCH):
        emails = [opted_out(i) for i in range(start, min(count, start + UNSUBSCRIBE_BATCH))]
        api.wait_subscribe(api.unsubscribe(None, emails), timeout=60)
        time.sleep(0.02)  # 75 calls/s: stay under bulk_unsubscribe_profiles' burst


def fill_mirror(sandbox: Sandbox, stack: engine.EngineStack) -> dict[str, Any]:
    """Fill the account's mirror as a worker would; how long it took and what it holds."""
    client = KlaviyoClient(stack.key, base_url=sandbox.url, revision=REVISION)
    account = client.account
    mirror = OptOutMirror(redis.Redis.from_url(stack.redis.url), stack.prefix, account)
    before = sandbox.account_stats(stack.key).get("get_profiles", {}).get("calls", 0)
    started = time.time()
    while not refresh(mirror, client, budget_seconds=60).filled:
        time.sleep(0.5)
    after = sandbox.account_stats(stack.key).get("get_profiles", {}).get("calls", 0)
    return {"seconds": time.time() - started, "entries": mirror.size(),
            "requests": after - before}


def run_pair(workdir: Path, rds: Redis, sandbox: Sandbox, *, profiles: int, concurrency: int,
             suppressed: int, timeout: float) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The two rows (without, with) and the comparison (ratio, the fill's cost)."""
    fill: dict[str, Any] = {}

    def without(stack: engine.EngineStack) -> None:
        stack.extra_env.update(QUIET_REFRESH)
        unsubscribe_people(sandbox, stack.key, suppressed)

    def with_screen(stack: engine.EngineStack) -> None:
        stack.extra_env.update(QUIET_REFRESH)
        unsubscribe_people(sandbox, stack.key, suppressed)
        fill.update(fill_mirror(sandbox, stack))

    rows = []
    workers = f"{concurrency} worker{'s' if concurrency > 1 else ''}"
    for label, lines, prepare in (
        (f"(c) this project, {workers}, subscribe, no opt-out check (resubscribe)",
         "resubscribe = true\n", without),
        (f"(c) this project, {workers}, subscribe, opt-out check "
         f"({suppressed:,} unsubscribed on the account)", "", with_screen),
    ):
        print(f"{label}, {profiles:,} profiles", flush=True)
        res = engine.run_export(workdir, rds, sandbox, profiles=profiles, concurrency=concurrency,
                                force_add=False, timeout=timeout, job_lines=lines,
                                prepare=prepare)
        rows.append(report.engine_row(label, res, ceiling.SUBSCRIBE))
        print("   ", report.one_line(rows[-1]), flush=True)
    plain, screened = (r["seconds"] for r in rows)
    comparison = {"without_seconds": plain, "with_seconds": screened,
                  "slower_percent": (screened / plain - 1) * 100, "fill": fill}
    print(f"    opt-out check: {comparison['slower_percent']:+.1f} % wall time; mirror fill "
          f"{fill.get('seconds', 0):.1f} s, {fill.get('requests', 0)} requests, "
          f"{fill.get('entries', 0):,} entries (once per account, before the clock)", flush=True)
    return rows, comparison
