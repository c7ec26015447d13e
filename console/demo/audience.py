"""The demo's audience: the shipped example files, and the list they must produce."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from worker.engine.normalize import normalize_email

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
JOBS_FILE = EXAMPLES / "demo-jobs.toml"
SAMPLE_AUDIENCE = EXAMPLES / "sample-audience.jsonl"
LIVE_EVENTS = EXAMPLES / "webhooks" / "live-events.json"
JOB_ID = "demo"
DEMO_TOKEN = "demo-token"  # noqa: S105 - a documented throwaway token for the local demo


def demo_prefix(now: float) -> str:
    """A KEY_PREFIX of its own for each run: ``demo`` and the time in milliseconds."""
    return f"demo{int(now * 1000)}"


def rfc3339(ts: float) -> str:
    """Seconds since the epoch → the timestamp form Lytics sends."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def read_profiles(path: Path) -> list[dict[str, Any]]:
    """The sample audience: one Lytics profile per line, membership in ``segments``."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]


def split_by_segment(profiles: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Profiles grouped by audience slug, as the sandbox's ``--lytics-members`` files hold them."""
    out: dict[str, list[dict[str, Any]]] = {}
    for profile in profiles:
        for segment in profile.get("segments", []):
            out.setdefault(segment, []).append(profile)
    return out


def enter_body(profile: Mapping[str, Any], stamp: str) -> dict[str, Any]:
    """One Lytics webhook body in which ``profile`` enters each of its audiences."""
    data = {k: v for k, v in profile.items() if k != "segments"}
    data["segment_events"] = [{"slug": s, "event": "enter", "enter": stamp}
                              for s in profile.get("segments", [])]
    return {"data": data, "meta": {"object": "user", "timestamp": stamp}}


def restamp(bodies: Sequence[dict[str, Any]], stamp: str) -> list[dict[str, Any]]:
    """Copies of webhook bodies whose every timestamp is ``stamp`` (events happen now)."""
    out = []
    for body in bodies:
        copy = json.loads(json.dumps(body))
        copy.setdefault("meta", {})["timestamp"] = stamp
        for entry in copy["data"]["segment_events"]:
            entry[entry["event"]] = stamp
        out.append(copy)
    return out


def _entry_audience(entry: Mapping[str, Any], audiences: Sequence[str]) -> str | None:
    for key in ("id", "slug"):
        if entry.get(key) in audiences:
            return str(entry[key])
    return None


def expected_members(profiles: Iterable[Mapping[str, Any]], bodies: Iterable[Mapping[str, Any]],
                     audiences: Sequence[str]) -> set[str]:
    """The emails the list must hold: the backfill, then the live events, in order."""
    held: dict[str, set[str]] = {}
    for profile in profiles:
        email = normalize_email(profile.get("email"))
        if email:
            held.setdefault(email, set()).update(a for a in profile.get("segments", [])
                                                 if a in audiences)
    for body in bodies:
        email = normalize_email(body["data"].get("email"))
        if not email:
            continue
        for entry in body["data"]["segment_events"]:
            audience = _entry_audience(entry, audiences)
            if audience is None:
                continue
            if entry["event"] == "enter":
                held.setdefault(email, set()).add(audience)
            elif entry["event"] == "exit":
                held.setdefault(email, set()).discard(audience)
    return {email for email, member_of in held.items() if member_of}
