"""The issue's own size: 100,000 members, two worker processes, Klaviyo's real limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.backfill.helpers import check_exact_run, members, run_start, write_jsonl
from tests.harness import Stack

N = 100_000


@pytest.fixture
def big(stack: Stack) -> Stack:
    stack.write_jobs({"id": "bf", "audiences": ["vip"],
                      "new_list_opt_in": "single", "new_list_name": "Backfill 100k"})
    stack.start_worker("w1", concurrency=2)
    stack.start_worker("w2", concurrency=2)
    return stack


@pytest.mark.slow
def test_a_100000_member_file_lands_exactly(big: Stack, tmp_path: Path) -> None:
    """The list ends holding exactly the valid members; omitted equals the invalid rows."""
    rows, valid, bad = members(N)
    run_start(big, "bf", "--from-file", str(write_jsonl(tmp_path / "m.jsonl", rows)), "--wait",
              timeout=300)
    check_exact_run(big, valid, bad, N, timeout=240)


@pytest.mark.slow
def test_a_100000_member_lytics_scan_lands_exactly(big: Stack) -> None:
    """The same audience read through the sandbox's Lytics scan API ends the same."""
    rows, valid, bad = members(N)
    big.admin("POST", "lytics/segments/vip", json=rows)
    env = {"LYTICS_BASE_URL": big.sandbox_url, "LYTICS_API_TOKEN": "lytics-test-token"}
    run_start(big, "bf", "--wait", env=env, timeout=300)
    check_exact_run(big, valid, bad, N, timeout=240)
