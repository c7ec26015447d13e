"""Rows, the markdown table and the chart for ``python -m bench.run``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bench.baselines import SampleResult
from bench.ceiling import EPOCH, Limits, max_profiles
from core.settings import Settings

HEADROOM = Settings.model_fields["rate_limit_headroom"].default

PATHS = {
    "backfill": "through the backfill (`klaviyo-export start JOB --from-file audience.jsonl`; the "
    "clock starts when the command reports the list ready and begins dispatching)",
    "realtime": "through the real-time path (`send_events`, bodies of 1,000, as fast as Redis "
    "takes them; the clock starts at the first publish)",
}
SETUP_OPS = {"create_list", "get_lists", "get_list"}  # the bench's own set-up and polling calls


def _work_calls(ops: dict[str, Any]) -> tuple[int, int]:
    calls = sum(r["calls"] for op, r in ops.items() if op not in SETUP_OPS)
    throttled = sum(r["throttled"] for r in ops.values())
    return calls, throttled


def baseline_row(
    label: str, res: SampleResult, ops: dict[str, Any], limits: Limits
) -> dict[str, Any]:
    seconds = res.finished - res.started
    # Sustained rate: what the first whole minute window delivered (every later minute repeats it).
    per_min = res.first_minute if seconds >= 60 else res.profiles / seconds * 60
    calls, throttled = _work_calls(ops)
    return {
        "label": label,
        "profiles": res.profiles,
        "seconds": seconds,
        "per_min": per_min,
        "ceiling_per_min": limits.per_minute,
        "ratio": per_min / limits.per_minute,
        "calls_per_1000": calls * 1000 / res.profiles,
        "throttled": throttled,
        "cpu_per_100k": None,
        "worker_rss": None,
        "producer_rss": None,
        "exact": None,
        "extrapolated": True,
        "client_429s": res.throttled,
    }


def engine_row(label: str, res: dict[str, Any], limits: Limits) -> dict[str, Any]:
    # our work is done when Klaviyo has accepted the last call; its jobs then take seconds more
    # (the list is full at ``list_seconds``)
    end = res.get("sent", res["finished"])
    seconds = end - res["started"]
    allowed = max_profiles(limits, res["started"], end, res.get("account", EPOCH))
    calls, throttled = _work_calls(res["operations"])
    return {
        "label": label,
        "profiles": res["profiles"],
        "seconds": seconds,
        "per_min": res["profiles"] / seconds * 60,
        "ceiling_per_min": allowed / seconds * 60,
        "ratio": res["profiles"] / allowed,
        "calls_per_1000": calls * 1000 / res["profiles"],
        "throttled": throttled,
        "cpu_per_100k": res["worker_cpu"] * 100_000 / res["profiles"],
        "worker_rss": res["worker_rss"],
        "producer_rss": res["producer_rss"],
        "exact": res["exact"],
        "extrapolated": False,
        "cpu": {k: res.get(k) for k in ("worker_cpu", "producer_cpu", "redis_cpu", "sandbox_cpu")},
        "operations": {k: v["calls"] for k, v in res["operations"].items()},
        "list_seconds": res["finished"] - res["started"],
        "fields_seconds": (res["fields_done"] - res["started"]) if res.get("fields_done") else None,
    }


def _mb(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:,.0f} MB"


def _duration(seconds: float) -> str:
    if seconds >= 86_400:
        return f"{seconds / 86_400:,.1f} d"
    if seconds >= 3600:
        return f"{seconds / 3600:,.1f} h"
    return f"{seconds:,.1f} s"


def one_line(row: dict[str, Any]) -> str:
    return (
        f"{row['label']}: {row['profiles']:,} profiles in {row['seconds']:.1f}s = "
        f"{row['per_min']:,.0f}/min "
        f"({row['ratio']:.1%} of ceiling), {row['calls_per_1000']:.1f} calls/1000, "
        f"{row['throttled']} x 429" + ("" if row["exact"] is None else f", exact={row['exact']}")
    )


def markdown(
    rows: list[dict[str, Any]], latency: dict[str, Any] | None, facts: dict[str, Any]
) -> str:
    n = facts["profiles"]
    out = [
        "# Benchmarks: exporting one audience to a Klaviyo list",
        "",
        f"Measured by `make bench` (`{facts['command'].strip()}`) on {facts['date']}: "
        f"{facts['nproc']} cores (shared by the workers, redis-server, the sandbox and the "
        f"producer), Python {facts['python']}, against the sandbox as its own process at "
        "`--speed 1` (Klaviyo's real limits) on a real account's terms (see *On a real "
        "account's terms* below: random window phase, 100-300 ms a call, 15 % of every window "
        "used by another integration, seconds-long jobs), with a private redis-server and "
        "every setting at its default.",
        "",
        f"(c) runs export {n:,} new profiles each, {PATHS[facts['path']]}, each on its own "
        "sandbox account so quotas start fresh, until the list holds the whole audience; then the "
        "list's members were read back from the sandbox and compared with the audience.",
        f"(a) and (b) ran on a sample ({facts['sample']:,} users for (a), "
        f"{facts['sample'] * 100:,} profiles "
        "for (b)), side by side on separate accounts, starting on a minute boundary; their rate "
        "is what the "
        f"first whole minute window delivered, and their time for {n:,} profiles is extrapolated "
        "from it.",
        "",
        "Ceiling: the most profiles the fixed windows (burst 1 s, steady 1 min, at the "
        "account's own phase) leave us during the run's own wall time, from the operation's "
        "limits less the foreign client's share of each window by the run's last call in it: "
        "subscribe 75/s and 750/min x 1,000, force add through bulk import 10/s and 150/min x "
        "10,000. Over whole minutes this is 750,000 and 1,500,000 profiles/min (638,000 and "
        "1,280,000 at a 15 % foreign share). A run's time ends when Klaviyo has accepted its "
        "last subscribe or import (the list is whole seconds later, as Klaviyo's jobs "
        "complete). Each (c) run starts as the account's steady window opens, so a run of "
        "k windows' worth of calls that keeps up with Klaviyo ends inside "
        "its k-th window and scores 100%; a run that spills into one more window is charged what "
        "that window's burst limit admits in the seconds it touches (75 subscribe calls or 10 "
        "bulk imports a second, up to the whole window). 1,500,000 profiles is two windows of "
        "subscribes, or one of force adds. A run that starts as a window opens has a whole "
        "window at once, so its profiles per minute over its wall time can exceed the "
        "per-minute figure: the % of ceiling column is the measure.",
        "",
        "| run | profiles/min | ceiling for the run (profiles/min) | % of ceiling | time for "
        f"{n:,} (list whole) | "
        "API calls / 1,000 profiles | 429s | worker CPU s / 100k | peak RSS workers | peak RSS "
        "producer "
        "| list exact |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        time_for = n / r["per_min"] * 60 if r["extrapolated"] else r["seconds"]
        cpu = "n/a" if r["cpu_per_100k"] is None else f"{r['cpu_per_100k']:.1f}"
        exact = "n/a (sample)" if r["exact"] is None else ("yes" if r["exact"] else "**no**")
        label = r["label"] + (" *(sample, extrapolated)*" if r["extrapolated"] else "")
        whole = "" if r.get("list_seconds") is None else f" ({_duration(r['list_seconds'])})"
        out.append(
            f"| {label} | {r['per_min']:,.0f} | {r['ceiling_per_min']:,.0f} | {r['ratio']:.2%} | "
            f"{'≈ ' if r['extrapolated'] else ''}{_duration(time_for)}"
            f"{whole} | "
            f"{r['calls_per_1000']:,.1f} | "
            f"{r['throttled']:,} | {cpu} | {_mb(r['worker_rss'])} | {_mb(r['producer_rss'])} | "
            f"{exact} |"
        )
    out.append("")
    out.append(
        "Worker CPU is user + system time of the Celery parent and its pool processes (psutil) "
        "during "
        "the run; RSS peaks are sums over the worker process tree, sampled every 0.5 s; the "
        "producer "
        "is the publishing process. 429s are the sandbox's count for the run's account. The "
        "sandbox "
        f"process used {facts['sandbox_cpu']:,.0f} CPU seconds over the whole benchmark."
    )
    out.append("")
    short = [r for r in rows if r.get("cpu") and r["ratio"] < 0.9]
    for r in short:
        fit = r["ceiling_per_min"] * r["seconds"] / 60
        out += [
            f"{r['label']} took {r['seconds']:.1f} s, longer than the minute windows its calls "
            f"need: the windows it touched would have admitted {fit:,.0f} profiles in that "
            f"time, hence {r['ratio']:.1%}.",
            "",
        ]
    engine_rows = [r for r in rows if r.get("cpu")]
    if engine_rows:
        out += [
            "Where the CPU went during each (c) run (seconds of CPU; the machine has "
            f"{facts['nproc']} cores, shared):",
            "",
            "| run | wall s | workers | producer | redis-server | sandbox |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for r in engine_rows:
            c = r["cpu"]
            out.append(
                f"| {r['label']} | {r['seconds']:.1f} | {c['worker_cpu']:.1f} | "
                f"{c['producer_cpu']:.1f} | {c['redis_cpu']:.1f} | {c['sandbox_cpu']:.1f} |"
            )
        out.append("")
    if latency:
        out += [
            "## Real-time latency",
            "",
            f"{latency['events']:,} users posted to `klaviyo-export webhook --insecure-no-auth` "
            "in bodies of "
            f"100 every 0.1 s ({latency['rate']:,.0f} events/s), 4 worker processes, subscribe "
            "mode; "
            "time from the receiver's 202 to the user's appearance in the list (read back from "
            "the sandbox "
            "every ~0.1 s plus read time, so figures carry that much granularity).",
            "",
            "| p50 | p99 | max | refused posts |",
            "|---:|---:|---:|---:|",
            f"| {latency['p50']:.2f} s | {latency['p99']:.2f} s | {latency['max']:.2f} s "
            f"| {latency['refused_posts']} |",
            "",
        ]
    out += ["![profiles per minute, log scale](benchmarks.png)", ""]
    return "\n".join(out)


def chart(rows: list[dict[str, Any]], path: Path) -> None:
    """Profiles per minute (log scale) beside each run's share of its own fixed-window ceiling."""
    fig = Figure(figsize=(12, 0.6 * len(rows) + 2))
    FigureCanvasAgg(fig)
    rate, share = fig.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [3, 2]})
    labels = [r["label"].replace("(c) this project, ", "(c) ") for r in rows][::-1]
    colors = ["#bbbbbb" if r["extrapolated"] else "#2b6cb0" for r in rows][::-1]
    values = [r["per_min"] for r in rows][::-1]
    rate.barh(labels, values, color=colors)
    rate.scatter([r["ceiling_per_min"] for r in rows][::-1], labels, marker="|", s=400,
                 color="#c53030", label="the run's fixed-window ceiling", zorder=3)
    for y, v in enumerate(values):
        rate.text(v * 1.15, y, f"{v:,.0f}", va="center", fontsize=8)
    rate.set_xscale("log")
    rate.set_xlim(100, 10_000_000)
    rate.set_xlabel("profiles per minute over the run's wall time (log scale)")
    rate.legend(loc="upper right", fontsize=8)
    ratios = [100 * r["ratio"] for r in rows][::-1]
    share.barh(labels, ratios, color=colors)
    share.axvline(90, color="#c53030", linestyle="--", label="90%")
    for y, v in enumerate(ratios):
        inside = v > 25  # long bars carry their figure inside, in white
        share.text(v - 2 if inside else v + 2, y, f"{v:.1f}%", va="center", fontsize=8,
                   ha="right" if inside else "left", color="white" if inside else "black")
    share.set_xlim(0, 100)
    share.set_xlabel("% of the fixed-window ceiling for the run")
    share.legend(loc="upper right", fontsize=8)
    fig.suptitle("Exporting one audience to Klaviyo (sandbox at real limits)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _bar(ok: bool) -> str:
    return "yes" if ok else "**no**"


def real_account(real: dict[str, Any], latency: dict[str, Any] | None,
                 realism: dict[str, Any]) -> str:
    """(e): issue #16's figures, with the conditions they were measured under."""
    out = [
        "## On a real account's terms (issue #16)",
        "",
        "Every run above and below used the sandbox's realistic profile with: "
        f"window phase `{realism.get('window_phase')}` (each account's burst and steady "
        "windows start at a random offset, learnt only from `RateLimit-Reset`), "
        f"latency `{realism.get('latency')}` s per call, `foreign_share` "
        f"{realism.get('foreign_share')} (another integration uses that share of every window, "
        f"spread over it) and job delay `{realism.get('job_delay')}` (log-normal, median "
        "3 s: a subscribe or import job's profiles appear seconds after the 202). The workers "
        f"ran at the shipped `RATE_LIMIT_HEADROOM` ({HEADROOM}). A run's ceiling is what the "
        "account's own windows (phase read from the sandbox) leave after the foreign client: "
        "638 of 750 subscribes and 128 of 150 imports a whole minute. A run's time ends when "
        "Klaviyo has accepted its last call; the list is whole seconds later (the job delays), "
        "shown apart.",
        "",
    ]
    if real.get("fields"):
        out += [
            "| mode | without fields | with 3 mapped fields | with / without | fields all "
            "imported | 429s (ours) | bar: ≤ 1.25 x, ≥ 90 %, 0 x 429 |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        for c in real["fields"]:
            imported = "n/a" if c["fields_seconds"] is None else f"{c['fields_seconds']:.1f} s"
            out.append(
                f"| {c['mode']} | {c['without_seconds']:.1f} s ({c['without_ratio']:.1%}) | "
                f"{c['with_seconds']:.1f} s ({c['with_ratio']:.1%}) | {c['ratio']:.2f} x | "
                f"{imported} | {c['throttled']} | {_bar(c['meets'])} |")
        out.append("")
    live = real.get("live_during_backfill")
    if live and latency:
        ratio = live["p99"] / latency["p99"]
        accepted = live.get("accepted_p99", float("nan")) / latency.get("accepted_p99", 1.0)
        out += [
            f"A live enter's time to the list, {live['events']:,} enters at "
            f"{live['rate']:,.0f}/s through the webhook, with nothing else on the account and "
            f"during a {live['backfill_profiles']:,}-profile backfill of another job on the "
            f"same account (it added {live['backfill_added']:,} members, "
            f"{live['backfill_per_min']:,.0f}/min, while the probe ran):",
            "",
            "| | to the list: p50 | p99 | max | to Klaviyo's 202: p50 | p99 | 429s (ours) |",
            "|---|---:|---:|---:|---:|---:|---:|",
            *(f"| {name} | {r['p50']:.2f} s | {r['p99']:.2f} s | {r['max']:.2f} s | "
              f"{r.get('accepted_p50', float('nan')):.2f} s | "
              f"{r.get('accepted_p99', float('nan')):.2f} s | {r.get('throttled', '')} |"
              for name, r in (("no backfill", latency), ("during the backfill", live))),
            "",
            f"p99 to the list during / without: {ratio:.2f} x (bar: ≤ 2 x: {_bar(ratio <= 2)}); "
            f"to Klaviyo's acceptance: {accepted:.2f} x. The list's figure carries Klaviyo's "
            "job delay (log-normal, 3 s median, a long tail: a p99 over a few dozen jobs is "
            "nearly their slowest); the acceptance figure is the product's own part.",
            "",
        ]
    two = real.get("two_jobs")
    if two:
        a, b = two["shares"]
        out += [
            f"Two jobs on one account, {two['profiles']:,} profiles each, both backfills "
            "started together: each job's share of the members the account added until the "
            f"first job finished ({two['first_done']:.1f} s): {a:.1%} and {b:.1%} "
            f"(bar: each ≥ 40 %: {_bar(min(a, b) >= 0.4)}). Klaviyo had accepted every "
            f"subscribe of both at {two['sent_seconds']:.1f} s, together "
            f"{two['per_min']:,.0f}/min, {two['ratio']:.1%} of the account's subscribe "
            f"ceiling; the lists were whole at {two['seconds'][0]:.1f} s and "
            f"{two['seconds'][1]:.1f} s; {two['throttled']} x 429. The first job's share of "
            "each whole minute window of the account while both ran: "
            + (", ".join(f"{x:.0%}" for x in two["window_shares"]) or "none whole") + ".",
            "",
        ]
    ex = (real.get("mass_exit") or {}).get("exit")
    if ex:
        binding = min(ex["lookup_ratio"], ex["removal_ratio"])
        out += [
            "| mass exit | seconds (list empty) | per minute | % of look-up ceiling | "
            "% of removal ceiling | calls | 429s | bar: ≥ 90 % |",
            "|---|---:|---:|---:|---:|---|---:|---|",
            f"| {ex['profiles']:,} members, 3 mapped fields | {ex['seconds']:.1f} | "
            f"{ex['profiles'] / ex['seconds'] * 60:,.0f} | {ex['lookup_ratio']:.1%} | "
            f"{ex['removal_ratio']:.1%} | {ex['get_profiles']['calls']} look-ups, "
            f"{ex['remove']['calls']} removals | "
            f"{ex['get_profiles']['throttled'] + ex['remove']['throttled']} | "
            f"{_bar(max(ex['lookup_ratio'], ex['removal_ratio']) >= 0.9)} |",
            "",
            f"(The tighter ceiling is the one at the higher share; the other is at "
            f"{binding:.1%}.)",
            "",
        ]
    return "\n".join(out)
