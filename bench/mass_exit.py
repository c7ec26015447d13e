"""A field-mapped subscribe, then a mass exit, at Klaviyo's real limits (issue #16).

    uv run --frozen python -m bench.mass_exit [--profiles 300000] [--workers 4]

One sandbox (realistic, speed 1, ``bench.stack.CONDITIONS``), one redis-server, one job
with three mapped fields on one account, fed through the real-time path (``send_events``,
bodies of 1,000):

1. ``--profiles`` enters with three mapped fields: the time until Klaviyo has accepted every
   subscribe (and until the list holds them all), against the subscribe ceiling (750 calls
   of 1,000 a minute, less the foreign client's share), and the bulk imports the
   fields took (one per 10,000 members, not one per subscribe call);
2. the same people exit (an audience emptied by a definition change): the time until the list
   is empty, against the look-up ceiling (750 calls of 100 a minute: subscribe jobs return no
   profile ids, so each id is looked up once) and the removal ceiling (150 calls of 1,000),
   both less the foreign client's share.

Prints one JSON line per phase and a markdown table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import ceiling
from bench.baselines import list_count
from bench.engine import AUDIENCE, FIELDS, EngineStack, account_of, sleep_to_window
from bench.stack import ROOT, Redis, Sandbox, services

LOOKUP = ceiling.Limits("profile look-up (get_profiles)", 75, 750, 100)
REMOVAL = ceiling.Limits("removal (remove_profiles_from_list)", 10, 150, 1000)


def _produce(stack: EngineStack, profiles: int, action: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "bench.produce", "--redis", stack.redis.url,
           "--prefix", stack.prefix, "--job", stack.job, "--audience", AUDIENCE,
           "--profiles", str(profiles), "--action", action, "--fields"]
    return subprocess.Popen(cmd, cwd=ROOT, env=stack.env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)


def _until(sandbox: Sandbox, stack: EngineStack, list_id: str, done: Any, timeout: float,
           started: float) -> tuple[float, int]:
    polls = 0
    while True:
        count = list_count(sandbox, stack.key, list_id)
        polls += 1
        if done(count):
            return time.time(), polls
        if time.time() - started > timeout:
            raise TimeoutError(f"{count:,} in the list after {timeout:.0f}s")
        time.sleep(0.25)


def _calls(sandbox: Sandbox, key: str, op: str) -> dict[str, int]:
    row = sandbox.account_stats(key).get(op, {})
    return {"calls": int(row.get("calls", 0)), "items": int(row.get("items", 0)),
            "throttled": int(row.get("throttled", 0))}


def run_mass_exit(workdir: Path, rds: Redis, sandbox: Sandbox, *, profiles: int,
                  concurrency: int) -> dict[str, Any]:
    # the removal ceiling is measured, so the brake on mass removals (which would hold an
    # emptied audience's exits for a person to release) is off for this job
    sandbox.forget()
    stack = EngineStack(workdir, rds, sandbox, False, concurrency, field_map=dict(FIELDS),
                        job_lines="removal_brake = 1\n")
    try:
        stack.start()
        account = account_of(sandbox, stack.key)
        sleep_to_window(account)
        started = time.time()
        enter = _produce(stack, profiles, "enter")
        list_id = stack.list_id()
        joined, _ = _until(sandbox, stack, list_id, lambda n: n >= profiles,
                           600 + 20 * profiles / 750_000 * 60, started)
        enter.wait(timeout=120)
        while _calls(sandbox, stack.key, "bulk_import_profiles")["items"] < profiles:
            time.sleep(0.25)
            if time.time() - joined > 300:
                raise TimeoutError("mapped fields never all imported")
        fields_done = time.time()
        subscribe = {
            "phase": "subscribe, three mapped fields",
            "profiles": profiles,
            "seconds": joined - started,
            "fields_seconds": fields_done - started,
            "ceiling_profiles": ceiling.max_profiles(ceiling.SUBSCRIBE, started, joined, account),
            "bulk_subscribe": _calls(sandbox, stack.key, "bulk_subscribe_profiles"),
            "bulk_import": _calls(sandbox, stack.key, "bulk_import_profiles"),
        }
        subscribe["ratio"] = profiles / subscribe["ceiling_profiles"]
        print(json.dumps(subscribe), flush=True)

        sleep_to_window(account)
        started = time.time()
        leave = _produce(stack, profiles, "exit")
        emptied, _ = _until(sandbox, stack, list_id, lambda n: n == 0,
                            600 + 20 * profiles / 75_000 * 60, started)
        leave.wait(timeout=120)
        seconds = emptied - started
        exit_row = {
            "phase": "mass exit",
            "profiles": profiles,
            "seconds": seconds,
            "lookup_ceiling_profiles": ceiling.max_profiles(LOOKUP, started, emptied, account),
            "removal_ceiling_profiles": ceiling.max_profiles(REMOVAL, started, emptied, account),
            "get_profiles": _calls(sandbox, stack.key, "get_profiles"),
            "remove": _calls(sandbox, stack.key, "remove_profiles_from_list"),
        }
        exit_row["lookup_ratio"] = profiles / exit_row["lookup_ceiling_profiles"]
        exit_row["removal_ratio"] = profiles / exit_row["removal_ceiling_profiles"]
        print(json.dumps(exit_row), flush=True)
        return {"subscribe": subscribe, "exit": exit_row}
    finally:
        stack.stop()


def markdown(res: dict[str, Any], workers: int) -> str:
    sub, ex = res["subscribe"], res["exit"]
    return "\n".join([
        f"| phase ({sub['profiles']:,} profiles, {workers} worker processes) | seconds | "
        "per minute | % of ceiling | calls |",
        "|---|---|---|---|---|",
        f"| subscribe, 3 mapped fields (list exact) | {sub['seconds']:.1f} | "
        f"{sub['profiles'] / sub['seconds'] * 60:,.0f} | {100 * sub['ratio']:.0f} % of subscribe | "
        f"{sub['bulk_subscribe']['calls']} subscribe, {sub['bulk_import']['calls']} bulk imports "
        f"(fields all imported at {sub['fields_seconds']:.1f} s) |",
        f"| mass exit (list empty) | {ex['seconds']:.1f} | "
        f"{ex['profiles'] / ex['seconds'] * 60:,.0f} | "
        f"{100 * ex['lookup_ratio']:.0f} % of look-up, "
        f"{100 * ex['removal_ratio']:.0f} % of removal | {ex['get_profiles']['calls']} look-ups, "
        f"{ex['remove']['calls']} removals, "
        f"{ex['get_profiles']['throttled'] + ex['remove']['throttled']} 429s |",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", type=int, default=300_000)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args(argv)
    with services("bench-exit-") as (workdir, rds, sandbox):
        res = run_mass_exit(workdir, rds, sandbox, profiles=args.profiles,
                            concurrency=args.workers)
    print(markdown(res, args.workers))
    (workdir / "mass-exit.json").write_text(json.dumps(res), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
