"""``klaviyo-export runs``: finished backfills in a bounded history (issue #18)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import redis

from core.runs import MAX_HISTORY, history, record_run
from tests.backfill.helpers import run_start, write_jsonl
from tests.harness import ROOT, Stack

JOB = {"id": "bf", "audiences": ["vip"], "new_list_name": "Runs", "new_list_opt_in": "single"}


def runs(stack: Stack, *args: str) -> str:
    exe = str(Path(sys.executable).with_name("klaviyo-export"))
    proc = subprocess.run([exe, "runs", "bf", *args], cwd=ROOT, env=stack.env(),
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_runs_lists_finished_backfills_with_their_counts(stack: Stack, tmp_path: Path) -> None:
    """Two backfills, newest first, each with its times, counts, omitted by reason and rate."""
    # given a job and a file of 40 people in vip, 6 in another segment, 4 with bad emails
    stack.write_jobs(JOB)
    stack.start_worker(concurrency=2)
    assert "no runs yet" in runs(stack)
    rows = ([{"email": f"u{i}@example.com", "segments": ["vip"]} for i in range(40)]
            + [{"email": f"o{i}@example.com", "segments": ["other"]} for i in range(6)]
            + [{"email": f"bad{i}@@example", "segments": ["vip"]} for i in range(4)])
    path = write_jsonl(tmp_path / "m.jsonl", rows)
    # when it is backfilled twice (the second changes nothing on the list)
    before = time.time()
    run_start(stack, "bf", "--from-file", str(path), "--wait")
    run_start(stack, "bf", "--from-file", str(write_jsonl(tmp_path / "n.jsonl", rows[:10])),
              "--wait")
    # then runs shows both, newest first, with the counts of each
    newest, first = json.loads(runs(stack, "--json"))
    assert (first["kind"], first["status"]) == ("backfill", "finished")
    assert (first["profiles"], first["exported"], first["failed"]) == (50, 40, 0)
    assert first["omitted"] == {"invalid_email": 4, "not_in_audience": 6}
    assert before <= first["started_at"] <= first["finished_at"] <= newest["started_at"]
    assert first["per_second"] > 0 and first["source"].endswith("m.jsonl")
    assert (newest["profiles"], newest["exported"]) == (10, 10)
    text = runs(stack).splitlines()
    assert len(text) == 2 and text[1].startswith(f"backfill {first['run']} finished")
    assert "omitted 10 (invalid_email 4, not_in_audience 6), failed 0" in text[1]


def test_the_history_is_bounded(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    for i in range(MAX_HISTORY + 5):
        record_run(client, "h", "job", {"kind": "audit", "run": str(i)})
    kept = history(client, "h", "job")
    assert len(kept) == MAX_HISTORY and kept[0]["run"] == str(MAX_HISTORY + 4)
