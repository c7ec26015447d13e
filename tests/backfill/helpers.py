"""Shared steps of the backfill end-to-end tests: members, running ``start``, reading a run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from core import redisconn
from tests.harness import ROOT, Stack

BAD = ("not-an-email", "", "bob@@example")


def members(n: int, invalid_every: int = 97) -> tuple[list[dict[str, Any]], set[str], int]:
    """``n`` profiles (every ``invalid_every``-th has a bad email); the valid emails; bad count."""
    rows, valid, bad = [], set(), 0
    for i in range(n):
        if i % invalid_every == 5:
            rows.append({"email": BAD[bad % len(BAD)], "_uid": f"u{i}"})
            bad += 1
        else:
            email = f"user{i}@example.com"
            rows.append({"email": email, "_uid": f"u{i}"})
            valid.add(email)
    return rows, valid, bad


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def start_cmd(*args: str) -> list[str]:
    """The installed ``klaviyo-export`` (as operators run it; ``python -m console.cli``
    would load the module twice, and its ``UserError`` would escape as a traceback)."""
    return [str(Path(sys.executable).with_name("klaviyo-export")), "start", *args]


def run_start(stack: Stack, *args: str, env: dict[str, str] | None = None,
              timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``klaviyo-export start ...`` as its own process, as an operator runs it."""
    proc = subprocess.run(start_cmd(*args), cwd=ROOT, env={**stack.env(), **(env or {})},
                          capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc


def run_info(stack: Stack, job_id: str) -> dict[str, str]:
    """The newest run's progress hash (empty before any run)."""
    r = redisconn.url_client(stack.redis_url, decode_responses=True)
    run_id = r.get(f"{stack.prefix}:bf:{job_id}:last")
    return r.hgetall(f"{stack.prefix}:bf:{job_id}:{run_id}") if run_id else {}


def subscribe_calls(stack: Stack) -> int:
    ops = stack.admin("GET", "stats")["operations"]
    return int(ops.get("bulk_subscribe_profiles", {}).get("calls", 0))


def throttled(stack: Stack) -> int:
    return int(stack.admin("GET", "stats")["total"]["throttled"])


def omitted_total(info: dict[str, str]) -> int:
    """Users left out for any reason, from a run's progress hash."""
    return sum(int(v) for k, v in info.items() if k.startswith("omitted:"))


def check_exact_run(stack: Stack, valid: set[str], bad: int, profiles: int,
                    timeout: float = 60) -> None:
    """The list holds exactly ``valid``; the run finished and counted every profile once,
    without a 429 and with about one subscribe call per 1,000 profiles."""
    stack.wait_for_members("bf", valid, timeout=timeout)
    info = run_info(stack, "bf")
    assert info["status"] == "finished" and omitted_total(info) == bad
    assert int(info["exported"]) == len(valid) and int(info["profiles"]) == profiles
    assert int(info.get("failed", 0)) == 0
    assert throttled(stack) == 0, "the limiter must keep every call under Klaviyo's windows"
    assert subscribe_calls(stack) <= 1.05 * profiles / 1000
    assert int(stack.counters("bf")["added"]) == len(valid)


def desired(stack: Stack, job_id: str, email: str) -> dict[str, str]:
    """A user's recorded desired state: audience → ``E:<ts_ns>`` or ``X:<ts_ns>``."""
    r = redisconn.url_client(stack.redis_url, decode_responses=True)
    return r.hgetall(f"{stack.prefix}:job:{job_id}:u:{email}")


def idle(stack: Stack, job_id: str) -> bool:
    """Nobody pending or held under a lease: every recorded change has been applied."""
    r = redisconn.url_client(stack.redis_url)
    base = f"{stack.prefix}:job:{job_id}"
    return r.zcard(f"{base}:pending") + r.zcard(f"{base}:inflight") == 0
