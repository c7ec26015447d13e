"""Consent choices end to end (real workers, Redis, the sandbox, the installed CLI): the
opt-in process a job asks for, read back from Klaviyo and shown; and add-only jobs."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from console.commands.status import job_status
from core.events import Action
from sandbox.server import SandboxServer
from sandbox.testing import SandboxClient
from tests.conftest import RedisServer, wait_until
from tests.engine.conftest import SUITE_JOB_DELAY
from tests.harness import API_KEY, ROOT, Stack, event

E, X = Action.ENTER, Action.EXIT
T0 = 1_764_000_000_000_000_000
VIP = {"id": "vip", "audiences": ["vip"], "new_list_name": "VIP", "backfill": False}


def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """``klaviyo-export ...`` as its own process, as an operator runs it."""
    exe = str(Path(sys.executable).with_name("klaviyo-export"))
    proc = subprocess.run([exe, *args], cwd=ROOT, env=stack.env(), capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc


def status_json(stack: Stack) -> dict[str, Any]:
    row: dict[str, Any] = json.loads(cli(stack, "status", "vip", "--json").stdout)[0]
    return row


def opt_in_of(stack: Stack, list_id: str) -> str:
    """The list's opt-in process as Klaviyo's API reports it."""
    resp = SandboxClient(stack.sandbox_url, API_KEY).call("GET", f"/api/lists/{list_id}")
    return str(resp.json()["data"]["attributes"]["opt_in_process"])


def double_stack(redis_url: str, tmp_path: Path, **knobs: Any) -> Iterator[Stack]:
    """A realistic stack: its account creates lists double opt-in unless asked otherwise."""
    server = SandboxServer(speed=1.0, job_delay=SUITE_JOB_DELAY, **knobs).start()
    s = Stack(redis_url=redis_url, sandbox_url=server.url, workdir=tmp_path)
    yield s
    s.stop_all()
    server.stop()


@pytest.fixture
def dstack(redis_server: RedisServer, redis_url: str, tmp_path: Path) -> Iterator[Stack]:
    yield from double_stack(redis_url, tmp_path)


@pytest.fixture
def no_single_stack(redis_server: RedisServer, redis_url: str,
                    tmp_path: Path) -> Iterator[Stack]:
    """An account where single opt-in was never enabled: a single request gives double."""
    yield from double_stack(redis_url, tmp_path, single_opt_in_enabled=False)


class TestOptIn:
    def test_a_single_opt_in_job_gets_a_single_opt_in_list_with_members(
            self, dstack: Stack) -> None:
        """On an account whose lists default to double opt-in, the job's single opt-in is
        asked for, read back, shown by start and status, and people join at once."""
        dstack.write_jobs({**VIP, "new_list_opt_in": "single"})
        out = cli(dstack, "start", "vip").stdout
        list_id = dstack.job_state("vip")["list_id"]
        assert f"vip: list {list_id} ready (single opt-in)" in out
        assert "WARNING" not in out
        assert opt_in_of(dstack, list_id) == "single_opt_in"
        dstack.start_worker()
        dstack.send("vip", [event("ann@example.com", "vip", E, T0)])
        dstack.wait_for_members("vip", {"ann@example.com"})
        row = status_json(dstack)
        assert (row["opt_in_process"], row["opt_in_note"]) == ("single_opt_in", "")

    def test_by_default_the_list_is_double_opt_in_and_people_wait_to_confirm(
            self, dstack: Stack) -> None:
        dstack.write_jobs({**VIP, "new_list_opt_in": None})
        out = cli(dstack, "start", "vip").stdout
        list_id = dstack.job_state("vip")["list_id"]
        assert f"vip: list {list_id} ready (double opt-in)" in out
        assert opt_in_of(dstack, list_id) == "double_opt_in"
        dstack.start_worker()
        dstack.send("vip", [event("ann@example.com", "vip", E, T0)])
        wait_until(lambda: dstack.admin("GET", f"lists/{list_id}/emails")["pending"]
                   == ["ann@example.com"], timeout=30, message="ann to await confirmation")
        assert dstack.list_emails(list_id) == set()
        assert f"list {list_id} (double opt-in)" in cli(dstack, "status", "vip").stdout
        assert status_json(dstack)["opt_in_process"] == "double_opt_in"

    def test_single_asked_but_double_given_is_said_plainly_and_logged_once(
            self, no_single_stack: Stack) -> None:
        stack = no_single_stack
        stack.write_jobs({**VIP, "new_list_opt_in": "single"})
        first = cli(stack, "start", "vip")
        list_id = stack.job_state("vip")["list_id"]
        assert f"vip: list {list_id} ready (double opt-in)" in first.stdout
        warning = (f"asked for single opt-in, but list {list_id} is double opt-in: Klaviyo "
                   "created it double opt-in")
        assert f"vip: WARNING: {warning}" in first.stdout
        assert first.stderr.count(warning) == 1, first.stderr
        again = cli(stack, "start", "vip")  # the list is re-checked: said again, not logged
        assert f"vip: WARNING: {warning}" in again.stdout
        assert warning not in again.stderr, again.stderr
        row = status_json(stack)
        assert row["opt_in_process"] == "double_opt_in" and warning in row["opt_in_note"]
        assert f"WARNING: {warning}" in cli(stack, "status", "vip").stdout


class TestExitPolicy:
    @pytest.mark.parametrize(("on_exit", "members"), [("keep", {"ann@example.com"}),
                                                      ("remove", set())])
    def test_an_exit_removes_unless_the_job_keeps(
            self, stack: Stack, on_exit: str, members: set[str]) -> None:
        """Add-only (keep): the exit is recorded but nobody is removed; counters still say
        added - removed = members. The default removes."""
        stack.write_jobs({**VIP, "new_list_opt_in": "single", "on_exit": on_exit})
        stack.start_worker()
        stack.send("vip", [event("ann@example.com", "vip", E, T0),
                           event("bob@example.com", "vip", E, T0)])
        list_id = stack.wait_for_members("vip", {"ann@example.com", "bob@example.com"})
        stack.send("vip", [event("ann@example.com", "vip", X, T0 + 1)])
        r = redis.Redis.from_url(stack.redis_url, decode_responses=True)
        wait_until(lambda: str(r.hget(f"{stack.prefix}:job:vip:u:ann@example.com", "vip"))
                   .startswith("X:"), timeout=30, message="the exit to be recorded")
        stack.wait_for_members("vip", {"bob@example.com", *members})
        stack.assert_reconciled("vip", entered=2, members=len(members) + 1)
        assert stack.list_emails(list_id) == {"bob@example.com", *members}
        row = status_json(stack)
        assert row["on_exit"] == on_exit
        assert (row["added"], row["removed"]) == (2, 0 if on_exit == "keep" else 1)
        # a re-enter works under either policy
        stack.send("vip", [event("ann@example.com", "vip", E, T0 + 2)])
        stack.wait_for_members("vip", {"ann@example.com", "bob@example.com"})
        stack.assert_reconciled("vip", entered=None, members=2)


def emails_on(stack: Stack, list_id: str) -> tuple[set[str], set[str]]:
    """(members, people awaiting confirmation) of a sandbox list."""
    found = stack.admin("GET", f"lists/{list_id}/emails")
    return set(found["emails"]), set(found["pending"])


def wait_status(stack: Stack, **expected: int) -> dict[str, Any]:
    """What ``status --json`` shows, once its counters say ``expected``."""
    client = redis.Redis.from_url(stack.redis_url)
    last: dict[str, Any] = {}

    def matches() -> bool:
        last.update(job_status(client, stack.prefix, "vip"))
        return all(last.get(k) == v for k, v in expected.items())

    wait_until(matches, timeout=60, interval=0.2, message=f"status to show {expected}: {last}")
    return last


class TestAwaitingConfirmation:
    def test_people_await_confirmation_until_the_list_shows_them(self, stack: Stack) -> None:
        """Issue #15: a job that does not choose gets a double opt-in list even on an account
        whose default is single (the default is sent); entering people are awaiting, not
        added; once some confirm, beat's pass over the list's recent joiners counts them added
        and the rest still awaiting; exported = added + awaiting; leaving before confirming
        is no removal, and confirming after leaving is undone."""
        # given a job without new_list_opt_in, on an account that defaults to single opt-in
        stack.write_jobs({**VIP, "new_list_opt_in": None})
        stack.start_worker()
        stack.start_beat()
        people = [f"p{i}@example.com" for i in range(6)]
        # when six people enter
        stack.send("vip", [event(e, "vip", E, T0) for e in people])
        list_id = stack.wait_for_list("vip")
        # then the list is double opt-in and all six await confirmation, nobody is added
        assert opt_in_of(stack, list_id) == "double_opt_in"
        wait_until(lambda: emails_on(stack, list_id) == (set(), set(people)), timeout=30,
                   message="six people pending in Klaviyo")
        wait_status(stack, awaiting_confirmation=6, added=0, pending=0)
        row = status_json(stack)  # the command, as an operator runs it
        assert (row["awaiting_confirmation"], row["added"]) == (6, 0)
        stack.assert_reconciled("vip", entered=6, members=0, awaiting=6)
        # when four of them click the confirmation email
        stack.admin("POST", "confirm", json={"list_id": list_id, "emails": people[:4]})
        # then the next pass counts them added; the other two still await
        wait_status(stack, added=4, awaiting_confirmation=2)
        assert emails_on(stack, list_id) == (set(people[:4]), set(people[4:]))
        assert "added 4 (confirmed), awaiting confirmation 2" in cli(stack, "status").stdout
        stack.assert_reconciled("vip", entered=6, members=4, awaiting=2)
        # when a confirmed person and an awaiting one leave the audience
        stack.send("vip", [event(people[0], "vip", X, T0 + 1), event(people[4], "vip", X, T0 + 1)])
        # then the member is removed and the awaiting one leaves awaiting, not counted removed
        wait_status(stack, added=4, removed=1, awaiting_confirmation=1)
        wait_until(lambda: emails_on(stack, list_id)[0] == set(people[1:4]), timeout=30,
                   message="the member who left to be removed")
        stack.assert_reconciled("vip", entered=None, members=3, awaiting=1)
        # when the one who left confirms anyway (the email cannot be recalled: they join)
        api = SandboxClient(stack.sandbox_url, API_KEY)
        pid = api.call("GET", "/api/profiles",
                       filter=f'equals(email,"{people[4]}")').json()["data"][0]["id"]
        api.call("POST", f"/api/lists/{list_id}/relationships/profiles",
                 {"data": [{"type": "profile", "id": pid}]})
        # then the pass sees them join and a flush removes them again; counters still agree
        wait_status(stack, added=5, removed=2, awaiting_confirmation=1)
        assert emails_on(stack, list_id)[0] == set(people[1:4])
        stack.assert_reconciled("vip", entered=None, members=3, awaiting=1)
        row = status_json(stack)
        assert (row["added"], row["removed"], row["awaiting_confirmation"]) == (5, 2, 1)
        assert row["opt_in_process"] == "double_opt_in"

    def test_a_single_opt_in_list_adds_people_at_once(self, stack: Stack) -> None:
        """Unchanged for single opt-in: added when the subscribe is accepted, nobody awaits."""
        stack.write_jobs({**VIP, "new_list_opt_in": "single"})
        stack.start_worker()
        stack.send("vip", [event(f"s{i}@example.com", "vip", E, T0) for i in range(3)])
        stack.wait_for_members("vip", {f"s{i}@example.com" for i in range(3)})
        wait_status(stack, added=3, awaiting_confirmation=0)
        stack.assert_reconciled("vip", entered=3, members=3, awaiting=0)

    def test_a_force_add_job_on_a_double_opt_in_list_adds_people_at_once(
            self, stack: Stack) -> None:
        """Force add changes no consent and sends no confirmation: members at once."""
        stack.write_jobs({**VIP, "new_list_opt_in": "double", "force_add": True})
        stack.start_worker()
        stack.send("vip", [event(f"f{i}@example.com", "vip", E, T0) for i in range(3)])
        list_id = stack.wait_for_members("vip", {f"f{i}@example.com" for i in range(3)})
        assert opt_in_of(stack, list_id) == "double_opt_in"
        wait_status(stack, added=3, awaiting_confirmation=0)
        stack.assert_reconciled("vip", entered=3, members=3, awaiting=0)
        assert "awaiting confirmation" not in cli(stack, "status").stdout
