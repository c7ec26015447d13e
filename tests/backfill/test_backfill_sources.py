"""Backfill end to end: a file (JSON lines or CSV) or Lytics' scan fills the list exactly."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from tests.backfill.helpers import (
    check_exact_run,
    members,
    run_info,
    run_start,
    subscribe_calls,
    throttled,
    write_jsonl,
)
from tests.harness import ROOT, Stack

N = 3000


@pytest.fixture
def bf(stack: Stack) -> Stack:
    stack.write_jobs({"id": "bf", "audiences": ["vip", "buyers"],
                      "new_list_opt_in": "single", "new_list_name": "Backfill"})
    stack.start_worker(concurrency=3)
    return stack


def test_jsonl_file_fills_the_list_with_exactly_the_valid(bf: Stack, tmp_path: Path) -> None:
    """A JSON-lines backfill subscribes every valid member once and counts the invalid rows."""
    rows, valid, bad = members(N)
    path = write_jsonl(tmp_path / "members.jsonl", rows)
    out = run_start(bf, "bf", "--from-file", str(path), "--wait")
    assert "exported" in out.stdout and "omitted" in out.stdout
    check_exact_run(bf, valid, bad, N)  # added == valid included
    status = subprocess.run([sys.executable, "-m", "console.cli", "status", "bf"], cwd=ROOT,
                            env=bf.env(), capture_output=True, text=True, check=True)
    assert f"exported {len(valid):,}" in status.stdout


def test_csv_file_with_a_header_row_is_read_like_json_lines(bf: Stack, tmp_path: Path) -> None:
    """A CSV file with a header row backfills the same way."""
    rows, valid, bad = members(2000)
    path = tmp_path / "members.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["email", "_uid", "segments"])
        writer.writeheader()
        writer.writerows({**r, "segments": "buyers,other"} for r in rows)
    run_start(bf, "bf", "--from-file", str(path), "--wait")
    check_exact_run(bf, valid, bad, 2000)


def test_lytics_scan_of_every_selected_audience(bf: Stack) -> None:
    """Without a file, each selected audience is read through Lytics' scan API."""
    rows, valid, _bad = members(N)
    vip, buyers = rows[:2000], rows[1000:]  # 1,000 users in both audiences: exported once
    bf.admin("POST", "lytics/segments/vip", json=vip)
    bf.admin("POST", "lytics/segments/buyers", json=buyers)
    env = {"LYTICS_BASE_URL": bf.sandbox_url, "LYTICS_API_TOKEN": "lytics-test-token"}
    run_start(bf, "bf", "--wait", env=env)
    bf.wait_for_members("bf", valid, timeout=60)
    info = run_info(bf, "bf")
    assert info["status"] == "finished" and int(info["profiles"]) == len(vip) + len(buyers)
    assert int(bf.counters("bf")["added"]) == len(valid)
    assert throttled(bf) == 0 and subscribe_calls(bf) <= 1.05 * N / 1000


def test_the_first_chunks_go_out_in_growing_segments(stack: Stack, tmp_path: Path) -> None:
    """Segments of 1, 2, 4, 8 chunks: the first chunk is queued as soon as it is read."""
    stack.write_jobs({"id": "bf", "audiences": ["vip"],
                      "new_list_opt_in": "single", "new_list_name": "Backfill"})
    rows, _valid, _bad = members(15_000)
    run_start(stack, "bf", "--from-file", str(write_jsonl(tmp_path / "m.jsonl", rows)))
    info = run_info(stack, "bf")
    assert (int(info["dispatched"]), int(info["segments"])) == (15, 4)
    assert int(info["total"]) == 15_000
