"""One account, several things at once (issue #16): live enters during a backfill, and two
backfills of two jobs side by side. Both run in one worker stack (one jobs file, one
limiter, one Klaviyo key), as a deployment with several jobs on one account does.

- *live during a backfill*: a ``--profiles`` backfill of one job fills the account's
  subscribe windows; once its first members are on the list, live enters of a second job
  arrive through the webhook (``bench.latency.probe``); their time to the list is compared
  with the same probe on an account nothing else uses (the bar: p99 within 2 x);
- *two jobs*: two backfills of ``profiles`` each, started together; each job's share of
  what the account added until the first of them finished (the bar: each at least 40 %),
  and their combined throughput against the account's subscribe ceiling.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from bench import ceiling
from bench.baselines import list_count
from bench.engine import (
    Command,
    EngineStack,
    accepted,
    account_of,
    sleep_to_window,
    start_backfill,
    write_audience,
)
from bench.latency import probe
from bench.stack import Redis, Sandbox, stop, wait_until

SUBSCRIBE_OP = "bulk_subscribe_profiles"
LIVE = "live"
SECOND = "second"


def _throttled(sandbox: Sandbox, key: str) -> int:
    return sum(int(r["throttled"]) for r in sandbox.account_stats(key).values())


def run_live_during_backfill(workdir: Path, rds: Redis, sandbox: Sandbox, *, profiles: int,
                             concurrency: int, seconds: float) -> dict[str, Any]:
    """The latency probe on one job while another job's backfill runs on the same account."""
    sandbox.forget()
    stack = EngineStack(workdir, rds, sandbox, False, concurrency, also=(LIVE,))
    backfill = None
    try:
        stack.start()
        source = write_audience(workdir / f"audience-{stack.tag}.jsonl", profiles)
        backfill = start_backfill(stack, source)
        list_id = stack.list_id()
        wait_until(lambda: list_count(sandbox, stack.key, list_id) > 0, 600,
                   "the backfill under way", interval=0.5)
        before, began = list_count(sandbox, stack.key, list_id), time.time()
        found = probe(stack, seconds=seconds, job=LIVE)
        after, ended = list_count(sandbox, stack.key, list_id), time.time()
        if after >= profiles:
            raise RuntimeError(f"the backfill ended during the probe: use more than {profiles:,}")
        return {**found, "backfill_profiles": profiles, "backfill_added": after - before,
                "backfill_per_min": (after - before) / (ended - began) * 60,
                "throttled": _throttled(sandbox, stack.key)}
    finally:
        if backfill is not None:
            stop(backfill.proc)
        stack.stop()


def run_two_jobs(workdir: Path, rds: Redis, sandbox: Sandbox, *, profiles: int,
                 concurrency: int, timeout: float) -> dict[str, Any]:
    """Two jobs' backfills of ``profiles`` each on one account, started together."""
    sandbox.forget()
    stack = EngineStack(workdir, rds, sandbox, False, concurrency, also=(SECOND,))
    names = ("", SECOND)
    commands: list[Command] = []
    try:
        stack.start()
        sources = [write_audience(workdir / f"audience-{stack.tag}-{n or 'first'}.jsonl",
                                  profiles, prefix=f"{n or 'first'}-") for n in names]
        account = account_of(sandbox, stack.key)
        sleep_to_window(account)
        commands += [start_backfill(stack, src, n) for n, src in zip(names, sources, strict=True)]
        lists = [stack.list_id(name=n) for n in names]
        started = time.time()
        counts, first_done, shares = [0, 0], None, [0.0, 0.0]
        done_at: list[float | None] = [None, None]
        sent, last_print = None, started
        samples: list[tuple[float, int, int]] = []
        while None in done_at:
            if time.time() - started > timeout:
                raise TimeoutError(f"two jobs: {counts} of {profiles:,} after {timeout:.0f}s")
            if any(c.failed() for c in commands):
                raise RuntimeError("\n".join(c.output() for c in commands))
            time.sleep(0.5)
            counts = [list_count(sandbox, stack.key, lst) for lst in lists]
            now = time.time()
            samples.append((now, counts[0], counts[1]))
            if sent is None and accepted(sandbox, stack.key, SUBSCRIBE_OP) >= 2 * profiles:
                sent = now
            if now - last_print >= 10:
                last_print = now
                print(f"    {now - started:6.1f}s  {counts[0]:>10,} and {counts[1]:,} of "
                      f"{profiles:,} in the lists", flush=True)
            for i, count in enumerate(counts):
                if count >= profiles and done_at[i] is None:
                    done_at[i] = now
            if first_done is None and None in done_at and any(done_at):
                first_done = now
                shares = [c / sum(counts) for c in counts]
        if first_done is None:  # both finished between two polls
            first_done, shares = time.time(), [0.5, 0.5]
        ready = [c.ready_at() or started for c in commands]
        began, finished = min(ready), max(t for t in done_at if t is not None)
        sent = sent or finished  # Klaviyo accepted the last subscribe of either job
        allowed = ceiling.max_profiles(ceiling.SUBSCRIBE, began, sent, account)
        return {"profiles": profiles, "shares": shares, "first_done": first_done - began,
                "seconds": [(t or finished) - r for t, r in zip(done_at, ready, strict=True)],
                "total_seconds": finished - began, "sent_seconds": sent - began,
                "ratio": 2 * profiles / allowed, "per_min": 2 * profiles / (sent - began) * 60,
                "window_shares": window_shares(samples, account, first_done),
                "throttled": _throttled(sandbox, stack.key)}
    finally:
        for command in commands:
            stop(command.proc)
        stack.stop()


def window_shares(samples: list[tuple[float, int, int]], account: ceiling.Account,
                  until: float) -> list[float]:
    """The first job's share of what each whole steady window of the account added, for the
    windows that ended before ``until`` (both jobs still running); from the list counts
    sampled nearest the windows' edges."""
    if not samples:
        return []
    def at(t: float) -> tuple[float, int, int]:
        return min(samples, key=lambda s: abs(s[0] - t))

    shares = []
    edge = math.ceil((samples[0][0] - account.steady_phase) / 60) * 60 + account.steady_phase
    while edge + 60 <= until:
        (_, a0, b0), (_, a1, b1) = at(edge), at(edge + 60)
        if (a1 - a0) + (b1 - b0) > 0:
            shares.append((a1 - a0) / ((a1 - a0) + (b1 - b0)))
        edge += 60
    return shares
