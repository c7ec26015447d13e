"""A job's lifecycle end to end (real workers, Redis, the sandbox, the installed CLI): pause,
resume, stop, and audiences added to or removed from the jobs file (issue #18)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis

from core.events import Action
from core.keys import broker_queue_keys
from tests.backfill.helpers import write_jsonl
from tests.conftest import wait_until
from tests.harness import ROOT, Stack, event

E, X = Action.ENTER, Action.EXIT
VIP = {"id": "vip", "audiences": ["vip"], "new_list_name": "VIP", "backfill": False,
       "new_list_opt_in": "single"}


def cli(stack: Stack, *args: str) -> str:
    """``klaviyo-export ...`` as its own process; its standard output."""
    exe = str(Path(sys.executable).with_name("klaviyo-export"))
    proc = subprocess.run([exe, *args], cwd=ROOT, env=stack.env(), capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc.stdout


def status(stack: Stack, job_id: str = "vip") -> dict[str, Any]:
    row: dict[str, Any] = json.loads(cli(stack, "status", job_id, "--json"))[0]
    return row


def calls(stack: Stack) -> int:
    """Every call the sandbox answered since its statistics were last cleared."""
    return int(stack.admin("GET", "stats")["total"]["calls"])


def quiet(stack: Stack) -> bool:
    """No message waiting in any queue: every record and flush task sent so far has run."""
    r = redis.Redis.from_url(stack.redis_url)
    return all(r.llen(key) == 0 for q in ("realtime", "backfill", "maintenance")
               for key in broker_queue_keys(stack.prefix, q))


def now() -> int:
    return time.time_ns()


def started(stack: Stack, *jobs: dict[str, Any], members: set[str],
            audience: str = "vip") -> str:
    """Jobs written, ``vip`` started, a worker running and ``members`` entered and on the list."""
    stack.write_jobs(*jobs)
    cli(stack, "start", "vip")
    stack.start_worker()
    stack.send("vip", [event(e, audience, E, now()) for e in sorted(members)])
    return stack.wait_for_members("vip", members)


class TestPause:
    def test_a_paused_job_records_events_sends_nothing_and_resumes_exactly(
            self, stack: Stack) -> None:
        """While paused, events arrive and are recorded but the sandbox sees no call at all;
        after resume the list is exactly the audience."""
        # given a running job with two members
        list_id = started(stack, VIP, members={"ann@example.com", "bob@example.com"})
        # when it is paused and events arrive
        assert "paused" in cli(stack, "pause", "vip")
        stack.admin("DELETE", "stats")
        stack.send("vip", [event("cat@example.com", "vip", E, now()),
                           event("dan@example.com", "vip", E, now()),
                           event("ann@example.com", "vip", X, now())])
        wait_until(lambda: status(stack)["pending"] == 3, timeout=30,
                   message="three users recorded as pending")
        wait_until(lambda: quiet(stack), timeout=30, message="every queued task to have run")
        time.sleep(0.6)  # three flush intervals: a flush that ignored the pause would have run
        # then nothing was sent, and status says paused with the changes waiting
        assert calls(stack) == 0, stack.admin("GET", "stats")
        row = status(stack)
        assert (row["status"], row["pending"]) == ("paused", 3)
        assert "vip: PAUSED" in cli(stack, "status", "vip")
        assert stack.list_emails(list_id) == {"ann@example.com", "bob@example.com"}
        # when resumed, the pending changes are applied: the list is exact
        assert "3 pending" in cli(stack, "resume", "vip")
        stack.wait_for_members("vip", {"bob@example.com", "cat@example.com", "dan@example.com"})
        stack.assert_reconciled("vip", entered=None, members=3)
        assert status(stack)["status"] == "ready"

    def test_a_paused_job_is_not_unpaused_by_a_bootstrap(self, stack: Stack) -> None:
        """Beat's list bootstrap (or ``start``) leaves a paused job paused and calls nobody."""
        started(stack, VIP, members={"ann@example.com"})
        cli(stack, "pause", "vip")
        stack.admin("DELETE", "stats")
        proc = subprocess.run([str(Path(sys.executable).with_name("klaviyo-export")), "start",
                               "vip"], cwd=ROOT, env=stack.env(), capture_output=True,
                              text=True, timeout=60, check=False)
        assert proc.returncode == 2 and "is paused" in proc.stderr
        assert calls(stack) == 0
        assert status(stack)["status"] == "paused"


class TestStop:
    def test_stop_forgets_the_state_keeps_the_list_and_start_begins_again(
            self, stack: Stack) -> None:
        list_id = started(stack, VIP, members={"ann@example.com", "bob@example.com"})
        # when stopped
        out = cli(stack, "stop", "vip")
        assert f"list {list_id} is kept" in out
        # then its state is gone but the list is untouched
        r = redis.Redis.from_url(stack.redis_url, decode_responses=True)
        left = set(r.scan_iter(match=f"{stack.prefix}:job:vip:*"))
        assert left == {f"{stack.prefix}:job:vip:state"}, left
        row = status(stack)
        assert (row["status"], row["added"], row["pending"]) == ("stopped", 0, 0)
        assert stack.list_emails(list_id) == {"ann@example.com", "bob@example.com"}
        # and events for a stopped job are dropped, nothing is called
        stack.admin("DELETE", "stats")
        stack.send("vip", [event("cat@example.com", "vip", E, now())])
        wait_until(lambda: quiet(stack), timeout=30, message="the record task to have run")
        assert calls(stack) == 0 and status(stack)["pending"] == 0
        # when started again, the job works from nothing on the same list
        assert "was stopped" in cli(stack, "start", "vip")
        stack.send("vip", [event("cat@example.com", "vip", E, now())])
        stack.wait_for_members("vip", {"ann@example.com", "bob@example.com", "cat@example.com"})
        assert stack.job_state("vip")["list_id"] == list_id
        assert status(stack)["status"] == "ready"


BOTH = {**VIP, "audiences": ["aud_a", "aud_b"]}
PEOPLE = {"ann@example.com": ["aud_a"], "bob@example.com": ["aud_a", "aud_b"],
          "cat@example.com": ["aud_b"]}


def _in_audiences(stack: Stack) -> str:
    """``vip`` on audiences a and b, with ann in a, bob in both and cat in b, all listed."""
    stack.write_jobs(BOTH)
    cli(stack, "start", "vip")
    stack.start_worker()
    stack.send("vip", [event(e, a, E, now()) for e, auds in PEOPLE.items() for a in auds])
    return stack.wait_for_members("vip", set(PEOPLE))


class TestAudienceChanges:
    def test_removing_an_audience_removes_exactly_its_members_in_no_other(
            self, stack: Stack) -> None:
        """aud_a leaves the job: ann (only in aud_a) leaves the list, bob (also in aud_b)
        stays; ``start`` says so."""
        list_id = _in_audiences(stack)
        stack.write_jobs({**BOTH, "audiences": ["aud_b"]})
        out = cli(stack, "start", "vip")
        assert "audience aud_a was removed" in out
        stack.wait_for_members("vip", {"bob@example.com", "cat@example.com"})
        stack.assert_reconciled("vip", entered=None, members=2)
        assert stack.list_emails(list_id) == {"bob@example.com", "cat@example.com"}
        assert status(stack)["removed"] == 1

    def test_beats_sweep_follows_a_removed_audience_without_start(self, stack: Stack) -> None:
        _in_audiences(stack)
        stack.start_beat()
        stack.write_jobs({**BOTH, "audiences": ["aud_a"]})
        stack.wait_for_members("vip", {"ann@example.com", "bob@example.com"}, timeout=60)

    def test_an_added_audience_is_named_by_status_and_backfilled_by_the_next_start(
            self, stack: Stack, tmp_path: Path) -> None:
        _in_audiences(stack)
        stack.write_jobs({**BOTH, "audiences": ["aud_a", "aud_b", "aud_c"]})
        assert status(stack)["audiences_not_backfilled"] == ["aud_c"]
        rows = [{"email": "dan@example.com", "segments": ["aud_c"]},
                {"email": "bob@example.com", "segments": ["aud_a", "aud_b"]}]
        out = cli(stack, "start", "vip", "--from-file",
                  str(write_jsonl(tmp_path / "c.jsonl", rows)), "--wait")
        assert "audience aud_c was added to the job: this backfill exports" in out
        stack.wait_for_members("vip", {*PEOPLE, "dan@example.com"}, timeout=60)
        assert status(stack)["audiences_not_backfilled"] == []
