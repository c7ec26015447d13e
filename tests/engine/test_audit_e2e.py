"""The read-back audit end to end (real workers, Redis, the sandbox, the installed CLI).

Drift is made by hand through Klaviyo's own API, as a marketer or a late Klaviyo job makes it:
people removed from and added to the list directly, a subscribe that lands after the person's
removal, and a double opt-in confirmation clicked after the person left the audience. ``audit``
must name each kind with its exact count, ``audit --repair`` must make the list exact through
the workers, and a second audit must find nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from core.events import Action
from sandbox.testing import SandboxClient
from tests.conftest import wait_until
from tests.harness import API_KEY, ROOT, Stack, event

E, X = Action.ENTER, Action.EXIT
T0 = 1_764_000_000_000_000_000


def cli(stack: Stack, *args: str, ok: int = 0) -> subprocess.CompletedProcess[str]:
    """``klaviyo-export ...`` as its own process, as an operator runs it."""
    exe = str(Path(sys.executable).with_name("klaviyo-export"))
    proc = subprocess.run([exe, *args], cwd=ROOT, env=stack.env(), capture_output=True,
                          text=True, timeout=180, check=False)
    assert proc.returncode == ok, proc.stderr + proc.stdout
    return proc


def audit(stack: Stack, job_id: str, *more: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(cli(stack, "audit", job_id, "--json", *more).stdout)
    return found


def counts(found: dict[str, Any], side: str) -> dict[str, int]:
    """The non-zero kinds of one side of an audit."""
    return {k: v["count"] for k, v in found["breakdown"][side].items() if v["count"]}


class Hand:
    """A marketer (or a late Klaviyo job) changing the list through Klaviyo's API."""

    def __init__(self, stack: Stack) -> None:
        self.api = SandboxClient(stack.sandbox_url, API_KEY)

    def profile_id(self, email: str) -> str:
        resp = self.api.call("GET", "/api/profiles", filter=f'equals(email,"{email}")')
        return str(resp.json()["data"][0]["id"])

    def remove(self, list_id: str, emails: list[str]) -> None:
        body = {"data": [{"type": "profile", "id": self.profile_id(e)} for e in emails]}
        resp = self.api.call("DELETE", f"/api/lists/{list_id}/relationships/profiles", body)
        assert resp.status_code == 204, resp.text

    def add(self, list_id: str, emails: list[str]) -> None:
        """New profiles, force-added to the list (no consent change)."""
        ids = []
        for email in emails:
            body = {"data": {"type": "profile", "attributes": {"email": email}}}
            ids.append(self.api.call("POST", "/api/profile-import", body).json()["data"]["id"])
        body = {"data": [{"type": "profile", "id": pid} for pid in ids]}
        resp = self.api.call("POST", f"/api/lists/{list_id}/relationships/profiles", body)
        assert resp.status_code == 204, resp.text

    def subscribe(self, list_id: str, emails: list[str]) -> None:
        """A subscribe job that lands now: what an asynchronous job late by minutes does."""
        job = self.api.wait_subscribe(self.api.subscribe(list_id, emails))
        assert job["status"] == "complete", job


SINGLE = {"id": "single", "audiences": ["a"], "new_list_name": "Single", "backfill": False,
          "new_list_opt_in": "single", "mirror": True}
DOUBLE = {"id": "double", "audiences": ["b"], "new_list_name": "Double", "backfill": False,
          "new_list_opt_in": "double"}


def test_audit_names_each_kind_of_hand_made_drift_and_repair_makes_the_lists_exact(
        stack: Stack) -> None:
    stack.write_jobs(SINGLE, DOUBLE)
    stack.start_worker()
    a = [f"a{i}@example.com" for i in range(10)]
    b = [f"b{i}@example.com" for i in range(4)]
    stack.send("single", [event(e, "a", E, T0) for e in a])
    stack.send("double", [event(e, "b", E, T0) for e in b])
    list_a = stack.wait_for_members("single", set(a))
    list_b = stack.wait_for_list("double")
    wait_until(lambda: len(stack.admin("GET", f"lists/{list_b}/emails")["pending"]) == 4,
               timeout=30, message="b0..b3 to await confirmation")
    stack.admin("POST", "confirm", json={"list_id": list_b, "emails": b[:3]})
    # a9 leaves and is removed; b3 leaves while its confirmation is on its way
    stack.send("single", [event(a[9], "a", X, T0 + 1)])
    stack.send("double", [event(b[3], "b", X, T0 + 1)])
    stack.wait_for_members("single", set(a[:9]))
    # b0..b2 confirmed (added); b3, who left before confirming, was never added, so nobody
    # counts as removed and nobody awaits any more
    def settled() -> bool:
        c = stack.counters("double")
        return (c.get("added"), c.get("awaiting_confirmation", "0"),
                c.get("removed", "0")) == ("3", "0", "0")

    wait_until(settled, timeout=30, message="b3's exit before confirming")

    hand = Hand(stack)
    hand.remove(list_a, a[:2])
    hand.add(list_a, ["h0@example.com", "h1@example.com", "h2@example.com"])
    hand.subscribe(list_a, [a[9]])  # the subscribe job that lands after the removal
    stack.admin("POST", "confirm", json={"list_id": list_b, "emails": [b[3]]})  # clicked late

    single = audit(stack, "single")
    assert (single["missing"], single["extra"]) == (2, 4)
    assert counts(single, "missing") == {"unexplained": 2}
    assert counts(single, "extra") == {"overtaken_by_async_job": 1, "added_by_hand": 3}
    assert (single["list_members"], single["desired_members"]) == (11, 9)
    double = audit(stack, "double")
    assert (double["missing"], double["extra"]) == (0, 1)
    assert counts(double, "extra") == {"confirmed_after_exit": 1}

    fixed = audit(stack, "single", "--repair")["repair"]
    assert (fixed["rejoin"], fixed["remove"], fixed["left"]) == (2, 4, {})
    assert audit(stack, "double", "--repair")["repair"]["remove"] == 1
    stack.wait_for_members("single", set(a[:9]))
    stack.wait_for_members("double", set(b[:3]))

    for job_id in ("single", "double"):
        again = audit(stack, job_id)
        assert (again["missing"], again["extra"]) == (0, 0), again
    stack.assert_reconciled("single", entered=None, members=9)
    stack.assert_reconciled("double", entered=None, members=3)


NO_MIRROR = {"id": "keepers", "audiences": ["c"], "new_list_name": "Keepers",
             "backfill": False, "new_list_opt_in": "single"}


def test_repair_keeps_hand_added_people_and_never_resends_suppressed_or_refused_ones(
        stack: Stack) -> None:
    """Without ``mirror`` people added by hand stay; a suppressed member and a profile Klaviyo
    refused are reported, not re-sent; ``status`` and ``health`` show the drift."""
    stack.write_jobs({**NO_MIRROR, "force_add": True})
    stack.start_worker()
    c = [f"c{i}@example.com" for i in range(5)]
    stack.send("keepers", [event(e, "c", E, T0) for e in [*c, "bad@domain.c"]])
    list_c = stack.wait_for_members("keepers", set(c))
    wait_until(lambda: stack.counters("keepers").get("dead_lettered") == "1", timeout=30,
               message="bad@domain.c to be dead-lettered")
    stack.admin("POST", "unsubscribe", json={"emails": [c[0]], "list_id": list_c})
    Hand(stack).add(list_c, ["h0@example.com", "h1@example.com"])
    Hand(stack).remove(list_c, [c[1]])

    found = audit(stack, "keepers", "--repair")
    assert counts(found, "missing") == {"suppressed": 1, "dead_lettered": 1, "unexplained": 1}
    assert counts(found, "extra") == {"added_by_hand": 2}
    assert found["repair"] == {"rejoin": 1, "remove": 0, "left": {
        "missing:suppressed": 1, "missing:dead_lettered": 1, "extra:added_by_hand": 2}}
    stack.wait_for_members("keepers", {*c[1:], "h0@example.com", "h1@example.com"})

    row = json.loads(cli(stack, "status", "keepers", "--json").stdout)[0]
    assert (row["audit"]["missing"], row["audit"]["extra"]) == (3, 2)
    assert "audit: missing 3, extra 2" in cli(stack, "status", "keepers").stdout
    health = json.loads(cli(stack, "health", "--json", ok=1).stdout)["components"]
    assert health["audit[keepers]"]["ok"] is False
    assert "1 out of place" in health["audit[keepers]"]["detail"]

    # and the run history shows the audit beside backfills, with the same counts
    entry = json.loads(cli(stack, "runs", "keepers", "--json").stdout)[0]
    assert entry["kind"] == "audit" and entry["status"] == "finished"
    assert (entry["members"], entry["missing"], entry["extra"]) == (found["list_members"], 3, 2)
    assert entry["missing_by_kind"] == {"dead_lettered": 1, "suppressed": 1, "unexplained": 1}
    assert entry["extra_by_kind"] == {"added_by_hand": 2}
    assert entry["started_at"] <= entry["finished_at"] and entry["per_second"] > 0
    assert (f"members {found['list_members']}, missing 3 (dead_lettered 1, suppressed 1, "
            f"unexplained 1), extra 2 (added_by_hand 2)") in cli(stack, "runs", "keepers").stdout
