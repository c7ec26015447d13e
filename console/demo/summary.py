"""What the demo prints when it is done: one fact a line."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Summary:
    """What the demo shows when it is done."""

    list_id: str | None
    list_name: str
    members: int | None  # None: membership cannot be read (a real Klaviyo account)
    expected: int | None
    matched: bool
    status: Mapping[str, Any]
    flower_url: str | None
    webhook_url: str
    klaviyo: str
    seconds: float
    backfill: str
    prefix: str


def format_omitted(omitted: Mapping[str, int]) -> str:
    """``8 (invalid_email 5, no_email 3)``, or ``0``."""
    total = sum(omitted.values())
    if not total:
        return "0"
    parts = ", ".join(f"{reason} {n}" for reason, n in sorted(omitted.items()))
    return f"{total} ({parts})"


def format_summary(s: Summary) -> list[str]:
    """The summary lines, one fact each."""
    st = s.status
    members = "unknown" if s.members is None else f"{s.members:,}"
    if s.expected is not None:
        members += f" (expected {s.expected:,})"
    lines = [
        f"Demo {'finished' if s.matched else 'did NOT converge'} in {s.seconds:.0f} s "
        f"(KEY_PREFIX {s.prefix}, backfill: {s.backfill})",
        f"  Klaviyo:   {s.klaviyo}",
        f"  list:      {s.list_id or '-'} \"{s.list_name}\" ({st.get('status', 'new')})",
        f"  members:   {members}",
        f"  added:     {int(st.get('added', 0)):,}",
        f"  removed:   {int(st.get('removed', 0)):,}",
        f"  omitted:   {format_omitted(st.get('omitted') or {})}",
        f"  failed:    {int(st.get('failed', 0)):,}  dead-lettered: "
        f"{int(st.get('dead_lettered', 0)):,}  pending: {int(st.get('pending', 0)):,}",
        f"  webhook:   POST {s.webhook_url} (Authorization: Bearer <WEBHOOK_TOKEN>)",
        f"  Flower:    {s.flower_url or 'not running (see warning above)'}",
    ]
    if st.get("reason") and st.get("status") != "ready":
        lines.append(f"  reason:    {st['reason']}")
    if st.get("last_error"):
        lines.append(f"  last error: {st['last_error']}")
    return lines


def run_once(environ: Mapping[str, str]) -> bool:
    """True when ``RUN_ONCE`` asks the demo to stop by itself after the summary."""
    return environ.get("RUN_ONCE", "").strip().lower() in {"1", "true", "yes", "on"}
