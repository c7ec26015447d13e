"""Backfill end to end: each person in exactly the job's audiences the source names, as of the
source's own time, and nothing written to Klaviyo when an input is wrong."""

from __future__ import annotations

import os
import random
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from core.events import Action
from tests.backfill.helpers import (
    desired,
    idle,
    run_info,
    run_start,
    start_cmd,
    write_jsonl,
)
from tests.conftest import wait_until
from tests.harness import ROOT, Stack, event

HOUR_NS = 3600 * 10**9


def _rfc3339(ts_ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts_ns // 10**9))


def _exit_and_settle(stack: Stack, audience: str, emails: set[str], stays: set[str]) -> None:
    """Exit ``emails`` from ``audience`` now; wait until the list holds ``stays`` and nothing
    is left to apply (a wrong removal would have happened by then)."""
    stack.send("bf", [event(e, audience, Action.EXIT, time.time_ns()) for e in emails])
    stack.wait_for_members("bf", stays, timeout=60)
    wait_until(lambda: idle(stack, "bf"), timeout=30, message="nothing pending or held")
    assert stack.list_emails(stack.wait_for_list("bf")) == stays


def test_a_row_in_two_audiences_stays_after_exiting_one(stack: Stack, tmp_path: Path) -> None:
    """A row naming aud_a and aud_b is recorded in both: a later exit from aud_a leaves the
    user on the list, while a user only in aud_a goes."""
    stack.write_jobs({"id": "bf", "audiences": ["aud_a", "aud_b"],
                      "new_list_opt_in": "single", "new_list_name": "Two"})
    stack.start_worker(concurrency=2)
    rows = [{"email": "both@example.com", "segments": ["aud_a", "aud_b"]},
            {"email": "only_a@example.com", "segments": ["aud_a"]},
            {"email": "only_b@example.com", "segments": ["other", "aud_b"]}]
    run_start(stack, "bf", "--from-file", str(write_jsonl(tmp_path / "m.jsonl", rows)), "--wait")
    stack.wait_for_members("bf", {r["email"] for r in rows}, timeout=60)
    info = run_info(stack, "bf")
    assert (info["profiles"], info["exported"]) == ("3", "3")  # people, not audience entries
    _exit_and_settle(stack, "aud_a", {"both@example.com", "only_a@example.com"},
                     stays={"both@example.com", "only_b@example.com"})
    assert set(desired(stack, "bf", "both@example.com")) == {"aud_a", "aud_b"}


def _mixed_file(path: Path) -> tuple[set[str], int, int, int]:
    """Rows in the job's audiences, in other segments only, and without segments, shuffled.
    Returns the emails to export, the people outside the job, the bad emails, the rows."""
    rows: list[dict[str, Any]] = []
    expected, bad = set(), 0
    groups = (("vip", 1200, ["vip"]), ("both", 300, ["buyers", "other", "vip"]),
              ("nofield", 50, None), ("other", 400, ["other"]), ("none", 100, []))
    for name, n, segments in groups:
        for i in range(n):
            email = f"{name}{i}@example.com"
            if name in ("vip", "both") and i % 97 == 5:
                email, bad = f"not-an-email-{name}{i}", bad + 1  # a person each
            elif name in ("vip", "both", "nofield"):
                expected.add(email)
            rows.append({"email": email} if segments is None
                        else {"email": email, "segments": segments})
    random.Random(12).shuffle(rows)
    write_jsonl(path, rows)
    return expected, 500, bad, len(rows)


def test_rows_in_none_of_the_jobs_audiences_are_left_out_once_each(
        stack: Stack, tmp_path: Path) -> None:
    """Only people the file places in vip or buyers (or in no segment at all) reach the list;
    rows naming other segments only are counted by the run as not_in_audience, and are none of
    the job's people (its counters hold no set of everyone outside it); chunks hold at most the
    bulk cap of people, whatever their audiences."""
    stack.write_jobs({"id": "bf", "audiences": ["vip", "buyers"],
                      "new_list_opt_in": "single", "new_list_name": "Mixed"})
    stack.start_worker(concurrency=2)
    path = tmp_path / "mixed.jsonl"
    expected, outside, bad, total = _mixed_file(path)
    out = run_start(stack, "bf", "--from-file", str(path), "--wait")
    assert "not_in_audience 500" in out.stdout
    stack.wait_for_members("bf", expected, timeout=60)
    info = run_info(stack, "bf")
    assert info["status"] == "finished" and int(info["profiles"]) == total
    assert int(info["omitted:not_in_audience"]) == outside
    assert int(info["omitted:invalid_email"]) == bad
    assert int(info["exported"]) == len(expected) and int(info.get("failed", 0)) == 0
    assert int(info["dispatched"]) == 2  # 1,550 people sent: two chunks of at most 1,000
    counters = stack.counters("bf")
    assert "omitted:not_in_audience" not in counters
    assert int(counters["omitted:invalid_email"]) == bad
    assert int(counters["added"]) == len(expected)
    assert set(desired(stack, "bf", "nofield7@example.com")) == {"vip", "buyers"}
    assert set(desired(stack, "bf", "both7@example.com")) == {"vip", "buyers"}
    assert desired(stack, "bf", "other7@example.com") == {}


def test_a_profile_in_two_scans_stays_after_exiting_one(stack: Stack) -> None:
    """Lytics' scan source records each scanned audience: someone in both scans is in both."""
    stack.write_jobs({"id": "bf", "audiences": ["vip", "buyers"],
                      "new_list_opt_in": "single", "new_list_name": "Scans"})
    stack.start_worker(concurrency=2)
    stack.admin("POST", "lytics/segments/vip",
                json=[{"email": "both@example.com"}, {"email": "vip@example.com"}])
    stack.admin("POST", "lytics/segments/buyers", json=[{"email": "both@example.com"}])
    env = {"LYTICS_BASE_URL": stack.sandbox_url, "LYTICS_API_TOKEN": "lytics-test-token"}
    run_start(stack, "bf", "--wait", env=env)
    stack.wait_for_members("bf", {"both@example.com", "vip@example.com"}, timeout=60)
    _exit_and_settle(stack, "vip", {"both@example.com", "vip@example.com"},
                     stays={"both@example.com"})


def _exited_an_hour_ago(stack: Stack, email: str) -> int:
    """A job on vip whose workers recorded ``email``'s exit, stamped an hour ago."""
    stack.write_jobs({"id": "bf", "audiences": ["vip"],
                      "new_list_opt_in": "single", "new_list_name": "As of"})
    stack.start_worker(concurrency=2)
    exited_at = time.time_ns() - HOUR_NS
    stack.send("bf", [event(email, "vip", Action.EXIT, exited_at)])
    wait_until(lambda: desired(stack, "bf", email), timeout=30, message="the exit recorded")
    return exited_at


def _stays_off(stack: Stack, email: str, exited_at: int, members: set[str]) -> None:
    """The list holds ``members`` once all is applied, and ``email``'s exit still stands."""
    stack.wait_for_members("bf", members, timeout=60)
    wait_until(lambda: idle(stack, "bf"), timeout=30, message="nothing pending or held")
    assert stack.list_emails(stack.wait_for_list("bf")) == members
    action, ts = desired(stack, "bf", email)["vip"].split(":")
    assert (action, int(ts)) == ("X", exited_at)


def test_a_file_as_of_before_an_exit_does_not_re_add_the_user(
        stack: Stack, tmp_path: Path) -> None:
    """--as-of stamps the file's enters: an exit recorded after that time wins."""
    exited_at = _exited_an_hour_ago(stack, "gone@example.com")
    path = write_jsonl(tmp_path / "m.jsonl", [{"email": "gone@example.com"},
                                              {"email": "stay@example.com"}])
    out = run_start(stack, "bf", "--from-file", str(path),
                    "--as-of", _rfc3339(exited_at - HOUR_NS), "--wait")
    assert f"as of {_rfc3339(exited_at - HOUR_NS)[:19]}" in out.stdout
    _stays_off(stack, "gone@example.com", exited_at, {"stay@example.com"})


def test_a_file_written_before_an_exit_does_not_re_add_the_user(
        stack: Stack, tmp_path: Path) -> None:
    """Without --as-of a file is as of its modification time, not the run's start."""
    exited_at = _exited_an_hour_ago(stack, "gone@example.com")
    path = write_jsonl(tmp_path / "m.jsonl", [{"email": "gone@example.com"},
                                              {"email": "stay@example.com"}])
    os.utime(path, ns=(exited_at - HOUR_NS, exited_at - HOUR_NS))
    run_start(stack, "bf", "--from-file", str(path), "--wait")
    _stays_off(stack, "gone@example.com", exited_at, {"stay@example.com"})


def _refused(stack: Stack, *args: str) -> str:
    proc = subprocess.run(start_cmd("bf", *args), cwd=ROOT, env=stack.env(),
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_a_wrong_input_is_refused_before_any_call_to_klaviyo(stack: Stack, tmp_path: Path) -> None:
    """A missing file, an --as-of in the future or unparsable, a file of unknown format, no
    Lytics token: one line, exit 2, and the sandbox saw no call (no list was created)."""
    stack.write_jobs({"id": "bf", "audiences": ["vip"],
                      "new_list_opt_in": "single", "new_list_name": "Never"})
    stack.admin("DELETE", "stats")
    members = write_jsonl(tmp_path / "m.jsonl", [{"email": "a@example.com"}])
    binary = tmp_path / "m.bin"
    binary.write_bytes(b"\x00\x01\x02")
    future = _rfc3339(time.time_ns() + 24 * HOUR_NS)
    assert "no such file" in _refused(stack, "--from-file", str(tmp_path / "missing.jsonl"))
    assert stack.admin("GET", "stats")["total"]["calls"] == 0  # the list was not created
    assert "in the future" in _refused(stack, "--from-file", str(members), "--as-of", future)
    assert "RFC 3339" in _refused(stack, "--from-file", str(members), "--as-of", "yesterday")
    assert "cannot tell the format" in _refused(stack, "--from-file", str(binary))
    assert "LYTICS_API_TOKEN" in _refused(stack)
    assert stack.admin("GET", "stats")["total"]["calls"] == 0
    assert not stack.job_state("bf").get("list_id")


@pytest.fixture(autouse=True)
def _no_stray_lytics_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """The refusals above rely on no token coming from the developer's environment."""
    monkeypatch.delenv("LYTICS_API_TOKEN", raising=False)

