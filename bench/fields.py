"""The same export with three mapped fields, beside the run without them (issue #16).

With fields, a subscribe export also sends every member's attributes in bulk imports of up
to 10,000 profiles, apart from the 1,000-profile subscribes; a force add carries them in its
own imports. The bar: with fields within 1.25 x the time without, at 90 % or more of the
ceiling the foreign client leaves, and no 429 from our own calls.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import ceiling, engine, report
from bench.stack import Redis, Sandbox

BAR_RATIO, BAR_CEILING = 1.25, 0.90


def run_mapped(workdir: Path, rds: Redis, sandbox: Sandbox, *, force_add: bool, profiles: int,
               concurrency: int, timeout: float, plain: dict[str, Any],
               path: str = "backfill") -> tuple[dict[str, Any], dict[str, Any]]:
    """The row with fields, and its comparison with ``plain`` (the same run without)."""
    mode = "force add" if force_add else "subscribe"
    label = f"{plain['label']}, 3 mapped fields"
    print(f"{label}, {profiles:,} profiles", flush=True)
    res = engine.run_export(workdir, rds, sandbox, profiles=profiles, concurrency=concurrency,
                            force_add=force_add, timeout=timeout, path=path,
                            field_map=engine.FIELDS)
    limits = ceiling.BULK_IMPORT if force_add else ceiling.SUBSCRIBE
    row = report.engine_row(label, res, limits)
    print("   ", report.one_line(row), flush=True)
    comparison = compare(mode, row, plain)
    print(f"    {mode} with fields / without: {comparison['ratio']:.2f} x", flush=True)
    return row, comparison


def compare(mode: str, with_fields: dict[str, Any], plain: dict[str, Any]) -> dict[str, Any]:
    """The figures the bar reads: time ratio, share of the ceiling, our 429s."""
    ratio = with_fields["seconds"] / plain["seconds"]
    share = with_fields["ratio"]
    throttled = with_fields["throttled"] + plain["throttled"]
    return {"mode": mode, "ratio": ratio, "with_ratio": share, "without_ratio": plain["ratio"],
            "with_seconds": with_fields["seconds"], "without_seconds": plain["seconds"],
            "fields_seconds": with_fields.get("fields_seconds"),
            "throttled": throttled,
            "meets": ratio <= BAR_RATIO and share >= BAR_CEILING and throttled == 0}
