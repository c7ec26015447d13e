"""The issue's own size: 100,000 members, two worker processes, Klaviyo's real limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.backfill.helpers import (
    members,
    run_info,
    run_start,
    subscribe_calls,
    throttled,
    write_jsonl,
)
from tests.harness import Stack

N = 100_000


@pytest.fixture
def big(stack: Stack) -> Stack:
    stack.write_jobs({"id": "bf", "audiences": ["vip"], "new_list_name": "Backfill 100k"})
    stack.start_worker("w1", concurrency=2)
    stack.start_worker("w2", concurrency=2)
    return stack


def _check(stack: Stack, valid: set[str], bad: int) -> None:
    stack.wait_for_members("bf", valid, timeout=240)
    info = run_info(stack, "bf")
    omitted = sum(int(v) for k, v in info.items() if k.startswith("omitted:"))
    assert omitted == bad and int(info.get("failed", 0)) == 0
    assert throttled(stack) == 0, "the limiter must keep every call under Klaviyo's windows"
    assert subscribe_calls(stack) <= 1.05 * N / 1000
    assert int(stack.counters("bf")["added"]) == len(valid)


@pytest.mark.slow
def test_a_100000_member_file_lands_exactly(big: Stack, tmp_path: Path) -> None:
    """The list ends holding exactly the valid members; omitted equals the invalid rows."""
    rows, valid, bad = members(N)
    run_start(big, "bf", "--from-file", str(write_jsonl(tmp_path / "m.jsonl", rows)), "--wait",
              timeout=300)
    _check(big, valid, bad)


@pytest.mark.slow
def test_a_100000_member_lytics_scan_lands_exactly(big: Stack) -> None:
    """The same audience read through the sandbox's Lytics scan API ends the same."""
    rows, valid, bad = members(N)
    big.admin("POST", "lytics/segments/vip", json=rows)
    env = {"LYTICS_BASE_URL": big.sandbox_url, "LYTICS_API_TOKEN": "lytics-test-token"}
    run_start(big, "bf", "--wait", env=env, timeout=300)
    _check(big, valid, bad)
