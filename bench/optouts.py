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

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import redis

from bench import ceiling, engine, report
from bench.stack import REVISION, Redis, Sandbox, fingerprint
from contract.operations import Operation
from sandbox.extra_operations import BULK_UNSUBSCRIBE
from sandbox.testing import SandboxClient
from worker.engine.optouts import refresh
from worker.klaviyo.client import KlaviyoClient
from worker.state.optouts import OptOutMirror

UNSUBSCRIBE_BATCH = BULK_UNSUBSCRIBE.batch_cap  # 100 profiles a call
IN_FLIGHT = 8  # calls in flight at once: at 100-300 ms a call, about 40 a second
# The bench runs workers without beat: keep a worker from refreshing the mirror itself during
# the run (it would, as beat's stand-in, after 4 periods). Beat's refresh runs on the
# maintenance queue, usually one request per kind: this pair measures the check on the
# subscribe path.
QUIET_REFRESH = {"OPTOUTS_REFRESH_SECONDS": "3600"}


def opted_out(i: int) -> str:
    return f"gone{i:07d}@bench.example"


class Pacer:
    """Spaces calls so that no 1 s span holds more than ``share`` of the operation's burst
    limit and no 60 s span more than ``share`` of its steady limit (a sliding log, whatever
    the account's window phase; the rest is left to the account's other clients)."""

    def __init__(self, op: Operation, share: float = 0.5) -> None:
        self.spans = ((1.0, max(1, int(op.burst * share))), (60.0, max(1, int(op.steady * share))))
        self.sent: list[float] = []
        self.lock = threading.Lock()

    def wait(self) -> None:
        with self.lock:
            while True:
                now = time.monotonic()
                waits = [self.sent[-cap] + span - now for span, cap in self.spans
                         if len(self.sent) >= cap and self.sent[-cap] + span > now]
                if not waits:
                    self.sent.append(now)
                    return
                time.sleep(max(waits))


def _post_unsubscribe(api: SandboxClient, pacer: Pacer, emails: list[str]) -> str:
    """One bulk-unsubscribe job, paced; a 429 (the account is shared) waits its Retry-After."""
    for _ in range(20):
        pacer.wait()
        try:
            return api.unsubscribe(None, emails)
        except AssertionError as exc:  # SandboxClient says "HTTP 429: ..." for any refusal
            if "HTTP 429" not in str(exc):
                raise
            time.sleep(2.0)
    raise RuntimeError("bulk unsubscribe: still throttled after 20 tries")


def unsubscribe_people(sandbox: Sandbox, key: str, count: int, timeout: float = 600) -> float:
    """``count`` people outside the audience unsubscribe through Klaviyo's bulk API: every job
    is submitted first (paced under ``bulk_unsubscribe_profiles``' burst and steady limits,
    a few calls in flight against the call latency), then all are awaited at once (each job
    takes seconds). Returns the seconds it took."""
    started = time.monotonic()
    batches = [[opted_out(i) for i in range(first, min(count, first + UNSUBSCRIBE_BATCH))]
               for first in range(0, count, UNSUBSCRIBE_BATCH)]
    pacer = Pacer(BULK_UNSUBSCRIBE)
    local = threading.local()

    def post(emails: list[str]) -> str:
        if not hasattr(local, "api"):
            local.api = SandboxClient(sandbox.url, key)
        return _post_unsubscribe(local.api, pacer, emails)

    with ThreadPoolExecutor(IN_FLIGHT) as pool:
        ids = set(pool.map(post, batches))
    api = SandboxClient(sandbox.url, key)
    deadline = time.monotonic() + timeout
    while True:
        jobs = api.admin("GET", f"subscribe-jobs?account={fingerprint(key)}")["data"]
        if ids <= {j["id"] for j in jobs if j["status"] == "complete"}:
            return time.monotonic() - started
        if time.monotonic() > deadline:
            raise TimeoutError(f"bulk unsubscribe jobs not complete after {timeout:.0f}s")
        time.sleep(0.5)


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
        took = unsubscribe_people(sandbox, stack.key, suppressed)
        print(f"    set-up: {suppressed:,} unsubscribed in {took:.1f} s", flush=True)

    def with_screen(stack: engine.EngineStack) -> None:
        without(stack)
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
