"""Backfill under trouble: a real-time exit mid-run, a killed worker, a killed producer."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from core.events import Action
from tests.backfill.helpers import (
    members,
    omitted_total,
    run_info,
    run_start,
    start_cmd,
    write_jsonl,
)
from tests.conftest import wait_until
from tests.harness import ROOT, Stack, event

pytestmark = pytest.mark.faults

VISIBILITY = 10  # seconds: the shortest the settings allow


@pytest.fixture
def bf(stack: Stack) -> Stack:
    stack.write_jobs({"id": "bf", "audiences": ["vip"],
                      "new_list_opt_in": "single", "new_list_name": "Backfill"})
    return stack


def _finished(stack: Stack, timeout: float = 90) -> dict[str, str]:
    wait_until(lambda: run_info(stack, "bf").get("status") == "finished", timeout=timeout,
               message="the backfill run to finish")
    return run_info(stack, "bf")


def _assert_counted_once(stack: Stack, info: dict[str, str], n: int, valid: set[str], bad: int
                         ) -> None:
    assert (int(info["profiles"]), int(info["exported"]), omitted_total(info)) == (
        n, len(valid), bad)
    assert int(info.get("failed", 0)) == 0
    assert int(stack.counters("bf")["added"]) == len(valid)


def test_a_user_exiting_during_the_backfill_is_not_put_back(bf: Stack, tmp_path: Path) -> None:
    """A real-time exit stamped after the run started wins over the backfill's enter."""
    rows, valid, _bad = members(3000)
    path = write_jsonl(tmp_path / "m.jsonl", rows)
    bf.start_worker(concurrency=2)
    proc = subprocess.Popen(start_cmd("bf", "--from-file", str(path)), cwd=ROOT, env=bf.env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_until(lambda: run_info(bf, "bf").get("ts_ns"), timeout=30, message="the run to start")
    leaving = {"user10@example.com", "user2500@example.com"}
    bf.send("bf", [event(e, "vip", Action.EXIT, time.time_ns()) for e in leaving])
    assert proc.wait(timeout=60) == 0
    bf.wait_for_members("bf", valid - leaving, timeout=60)
    _finished(bf)
    time.sleep(1.5)  # give a wrong re-add the time to show
    assert bf.list_emails(bf.wait_for_list("bf")) == valid - leaving


def test_a_worker_killed_mid_backfill_loses_and_doubles_nothing(bf: Stack, tmp_path: Path) -> None:
    """kill -9 of the worker mid-run: a new worker and the sweep finish the set, counted once."""
    rows, valid, bad = members(6000)
    path = write_jsonl(tmp_path / "m.jsonl", rows)
    bf.extra_env["VISIBILITY_TIMEOUT_SECONDS"] = str(VISIBILITY)
    bf.admin("POST", "faults", json={"latency_ms": 400})
    w1 = bf.start_worker("w1", concurrency=1)
    run_start(bf, "bf", "--from-file", str(path))
    wait_until(lambda: int(run_info(bf, "bf").get("done") or 0) >= 1, timeout=60,
               message="a first chunk to finish")
    bf.kill_worker(w1)
    assert int(run_info(bf, "bf").get("done") or 0) < 6
    bf.admin("DELETE", "faults")
    time.sleep(VISIBILITY + 1)  # a new worker restores messages unacked for longer at start-up
    bf.start_worker("w2", concurrency=2)
    bf.start_beat()
    bf.wait_for_members("bf", valid, timeout=90)
    _assert_counted_once(bf, _finished(bf), 6000, valid, bad)


def test_a_producer_killed_mid_dispatch_resumes_from_its_checkpoint(bf: Stack) -> None:
    """kill -9 of ``start`` mid-dispatch; running it again resumes the same run, counted once."""
    rows, valid, bad = members(6000)
    bf.admin("POST", "lytics/segments/vip", json=rows)
    bf.admin("POST", "faults", json={"latency_ms": 40, "only_operations": ["lytics_segment_scan"]})
    bf.start_worker(concurrency=2)
    env = {**bf.env(), "LYTICS_BASE_URL": bf.sandbox_url, "LYTICS_API_TOKEN": "tok"}
    proc = subprocess.Popen(start_cmd("bf", "--segment-chunks", "1"), cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: int(run_info(bf, "bf").get("dispatched") or 0) >= 2, timeout=60,
               message="two chunks to be dispatched")
    proc.kill()
    proc.wait(timeout=10)
    first = run_info(bf, "bf")
    assert first["dispatch_done"] == "0" and int(first["dispatched"]) < 6
    again = run_start(bf, "bf", "--segment-chunks", "1", "--wait",
                      env={"LYTICS_BASE_URL": bf.sandbox_url, "LYTICS_API_TOKEN": "tok"})
    assert "resuming backfill" in again.stdout
    bf.wait_for_members("bf", valid, timeout=60)
    info = _finished(bf)
    assert int(info["dispatched"]) == 6
    _assert_counted_once(bf, info, 6000, valid, bad)
