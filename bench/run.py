"""Side-by-side export benchmark against the sandbox at Klaviyo's real limits (speed 1).

    uv run --frozen python -m bench.run [--profiles 1500000] [--sample 1000] [--latency-seconds 30]

One run, one sandbox process, one redis-server, the same kind of audience exported by:
(a) one call per user through the official ``klaviyo-api`` SDK (sample, extrapolated);
(b) subscribe jobs of 100 in a loop honouring ``Retry-After`` (sample x 100 profiles, extrapolated);
(c) this project's workers (1 and 4 processes; subscribe and force add), ``--profiles`` each,
    driven through the real-time path (``send_events`` in bodies of 1,000);
(d) subscribe with the opt-out check and without it (``resubscribe = true``), side by side
    (``bench/optouts.py``);
(e) on a real account's terms (issue #16): subscribe and force add with three mapped fields
    beside the same runs without (``bench/fields.py``), a live event's time to the list during
    a backfill on the same account and two jobs' backfills side by side (``bench/shared.py``),
    and a mass exit (``bench/mass_exit.py``);
plus real-time latency from webhook acceptance to a correct list. The sandbox runs with
``bench.stack.CONDITIONS`` (per-account window phase, 100-300 ms a call, 15 % of every window
used by another client, seconds-long jobs). Writes docs/benchmarks.md and docs/benchmarks.png
and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench import audit as audit_bench
from bench import baselines, ceiling, engine, fields, mass_exit, optouts, report, shared
from bench import latency as latency_probe
from bench.stack import ROOT, Redis, Sandbox, TreeSampler, stop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--profiles", type=int, default=1_500_000, help="audience size for each (c) run"
    )
    parser.add_argument(
        "--sample",
        type=int,
        default=1000,
        help="users for baseline (a); baseline (b) sends this many calls of 100",
    )
    parser.add_argument(
        "--latency-seconds", type=float, default=30.0, help="0 skips the latency probe"
    )
    parser.add_argument("--workers", default="1,4", help="worker process counts for (c)")
    parser.add_argument("--modes", default="subscribe,force", help="(c) modes")
    parser.add_argument("--skip-baselines", action="store_true")
    parser.add_argument(
        "--optouts-suppressed", type=int, default=10_000,
        help="subscribe with and without the opt-out check, this many unsubscribed people "
        "on the account (0 skips the pair)",
    )
    parser.add_argument(
        "--path", choices=("backfill", "realtime"), default="backfill", help="how (c) is fed"
    )
    parser.add_argument("--fields-modes", default="subscribe,force",
                        help="(e) these modes again with three mapped fields ('' skips)")
    parser.add_argument("--live-backfill-profiles", type=int, default=1_500_000,
                        help="(e) the latency probe during a backfill this big (0 skips)")
    parser.add_argument("--two-jobs-profiles", type=int, default=750_000,
                        help="(e) two jobs' backfills of this many each, one account (0 skips)")
    parser.add_argument("--mass-exit-profiles", type=int, default=300_000,
                        help="(e) a mass exit of this many (0 skips)")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "docs", help="where benchmarks.md/.png go"
    )
    parser.add_argument(
        "--audit-members", type=int, default=0,
        help="also time `klaviyo-export audit` on a list this big (bench/audit.py); 0 skips",
    )
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    print(
        f"bench: workdir {workdir}; (c) {args.profiles:,} profiles; sample {args.sample:,}",
        flush=True,
    )
    rds = Redis(workdir)
    sandbox = Sandbox(workdir, speed=1)
    sampler = TreeSampler()
    sampler.watch("sandbox", sandbox.proc.pid)
    rows: list[dict[str, Any]] = []
    latency: dict[str, Any] | None = None
    optouts_check: dict[str, Any] | None = None
    audited: dict[str, Any] | None = None
    real: dict[str, Any] = {"fields": []}  # (e): issue #16's figures
    try:
        if not args.skip_baselines:
            rows += run_baselines(sandbox, args.sample)
        plain: dict[tuple[str, int], dict[str, Any]] = {}
        for mode in filter(None, args.modes.split(",")):
            for n in (int(w) for w in args.workers.split(",")):
                rows.append(export_row(workdir, rds, sandbox, args, mode, n))
                plain[(mode, n)] = rows[-1]
                sampler.sample()
        most = max(int(w) for w in args.workers.split(","))
        for mode in filter(None, args.fields_modes.split(",")):
            if (mode, most) not in plain:
                rows.append(export_row(workdir, rds, sandbox, args, mode, most))
                plain[(mode, most)] = rows[-1]
            base = plain[(mode, most)]
            row, compared = fields.run_mapped(
                workdir, rds, sandbox, force_add=mode == "force", profiles=args.profiles,
                concurrency=most, timeout=export_timeout(mode, args.profiles), plain=base,
                path=args.path)
            rows.append(row)
            real["fields"].append(compared)
        if args.optouts_suppressed > 0:
            n = max(int(w) for w in args.workers.split(","))
            pair, optouts_check = optouts.run_pair(
                workdir, rds, sandbox, profiles=args.profiles, concurrency=n,
                suppressed=args.optouts_suppressed,
                timeout=600 + 20 * args.profiles / ceiling.SUBSCRIBE.per_minute * 60)
            rows += pair
        if args.latency_seconds > 0:
            print(
                f"real-time latency: 1,000 events/s for {args.latency_seconds:.0f}s, 4 workers",
                flush=True,
            )
            latency = latency_probe.run_latency(
                workdir, rds, sandbox, concurrency=4, seconds=args.latency_seconds
            )
            print("   ", latency, flush=True)
        run_real_account(workdir, rds, sandbox, args, real)
        if args.audit_members > 0:
            print(f"audit: a list of {args.audit_members:,} members read back", flush=True)
            audited = audit_bench.run(workdir, rds, sandbox, members=args.audit_members,
                                      drift=100)
            print("   ", audited, flush=True)
    finally:
        sampler.sample()
        stop(sandbox.proc)
        stop(rds.proc)
    facts = {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "profiles": args.profiles,
        "sample": args.sample,
        "path": args.path,
        "sandbox_cpu": sampler.cpu_seconds("sandbox"),
        "command": "python -m bench.run " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    table = report.markdown(rows, latency, facts)
    table += report.real_account(real, latency, sandbox.realism)
    if optouts_check is not None:
        fill = optouts_check["fill"]
        table += (
            f"\nOpt-out check (issue #15): subscribe with the check took "
            f"{optouts_check['with_seconds']:.1f} s, without it "
            f"{optouts_check['without_seconds']:.1f} s ({optouts_check['slower_percent']:+.1f} %, "
            f"same run, side by side); the account's mirror was filled before the clock, once: "
            f"{fill.get('seconds', 0):.1f} s, {fill.get('requests', 0)} requests, "
            f"{fill.get('entries', 0):,} entries.\n")
    if audited is not None:
        table += audit_bench.markdown(audited)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "benchmarks.md").write_text(table, encoding="utf-8")
    (workdir / "results.json").write_text(
        json.dumps({"rows": rows, "latency": latency, "facts": facts,
                    "optouts_check": optouts_check, "real": real}, default=str),
        encoding="utf-8",
    )
    report.chart(rows, args.out / "benchmarks.png")
    print(f"wrote {args.out / 'benchmarks.md'} and {args.out / 'benchmarks.png'}")
    exact = all(r.get("exact") is not False for r in rows) and (audited or {}).get("exact", True)
    return 0 if exact else 1  # samples have None


def export_timeout(mode: str, profiles: int) -> float:
    limits = ceiling.BULK_IMPORT if mode == "force" else ceiling.SUBSCRIBE
    return 600 + 20 * profiles / limits.per_minute * 60


def export_row(workdir: Path, rds: Redis, sandbox: Sandbox, args: argparse.Namespace,
               mode: str, n: int) -> dict[str, Any]:
    """One (c) run: ``mode`` (subscribe or force) with ``n`` worker processes."""
    print(f"(c) {mode}, {n} worker process(es), {args.profiles:,} profiles", flush=True)
    res = engine.run_export(workdir, rds, sandbox, profiles=args.profiles, concurrency=n,
                            force_add=mode == "force", timeout=export_timeout(mode, args.profiles),
                            path=args.path)
    row = report.engine_row(
        f"(c) this project, {n} worker{'s' if n > 1 else ''}, "
        f"{'force add' if mode == 'force' else 'subscribe'}",
        res, ceiling.BULK_IMPORT if mode == "force" else ceiling.SUBSCRIBE)
    print("   ", report.one_line(row), flush=True)
    return row


def run_real_account(workdir: Path, rds: Redis, sandbox: Sandbox, args: argparse.Namespace,
                     real: dict[str, Any]) -> None:
    """(e) after the fields: live during a backfill, two jobs, the mass exit."""
    most = max(int(w) for w in args.workers.split(","))
    if args.live_backfill_profiles > 0 and args.latency_seconds > 0:
        print(f"(e) live enters for {args.latency_seconds:.0f}s during a "
              f"{args.live_backfill_profiles:,}-profile backfill on the same account", flush=True)
        real["live_during_backfill"] = shared.run_live_during_backfill(
            workdir, rds, sandbox, profiles=args.live_backfill_profiles, concurrency=most,
            seconds=args.latency_seconds)
        print("   ", real["live_during_backfill"], flush=True)
    if args.two_jobs_profiles > 0:
        print(f"(e) two jobs on one account, {args.two_jobs_profiles:,} profiles each", flush=True)
        real["two_jobs"] = shared.run_two_jobs(
            workdir, rds, sandbox, profiles=args.two_jobs_profiles, concurrency=most,
            timeout=export_timeout("subscribe", 2 * args.two_jobs_profiles))
        print("   ", real["two_jobs"], flush=True)
    if args.mass_exit_profiles > 0:
        print(f"(e) mass exit of {args.mass_exit_profiles:,} profiles", flush=True)
        real["mass_exit"] = mass_exit.run_mass_exit(
            workdir, rds, sandbox, profiles=args.mass_exit_profiles, concurrency=most)


def run_baselines(sandbox: Sandbox, sample: int) -> list[dict[str, Any]]:
    """(a) and (b) side by side (separate accounts, so separate quotas), from a minute boundary."""
    key_a, key_b = "pk_bench_sdk_one_per_user", "pk_bench_batches_of_100"
    list_a, list_b = (
        sandbox.create_list(key_a, "bench sdk"),
        sandbox.create_list(key_b, "bench b100"),
    )
    baselines.check_revision_header(sandbox, key_a)
    print(
        f"(a) SDK one call per user: {sample:,} users; (b) batches of 100: {sample * 100:,} "
        "profiles; "
        "waiting for a minute boundary",
        flush=True,
    )
    start = baselines.wait_for_minute()
    with ThreadPoolExecutor(2) as pool:
        fa = pool.submit(baselines.run_sdk, sandbox, key_a, list_a, sample, start)
        fb = pool.submit(baselines.run_batches, sandbox, key_b, list_b, sample * 100, start)
        ra, rb = fa.result(), fb.result()
    rows = []
    for label, key, res, limits in (
        ("(a) official SDK, one call per user", key_a, ra, ceiling.SUBSCRIBE),
        ("(b) subscribe batches of 100", key_b, rb, ceiling.SUBSCRIBE),
    ):
        rows.append(report.baseline_row(label, res, sandbox.account_stats(key), limits))
        print("   ", report.one_line(rows[-1]), flush=True)
    return rows


if __name__ == "__main__":
    sys.exit(main())
