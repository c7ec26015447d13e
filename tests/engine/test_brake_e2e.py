"""The brake on mass removals end to end (real workers, Redis, the sandbox, the installed CLI):
half of a 10,000-member list leaving at once (an audience broken in Lytics) is held back until
a person releases it, while new members keep joining."""

from __future__ import annotations

import json

from core.events import Action
from tests.conftest import wait_until
from tests.engine.test_audit_e2e import cli
from tests.harness import Stack, event

E, X = Action.ENTER, Action.EXIT
T0 = 1_764_000_000_000_000_000
JOB = {"id": "vip", "audiences": ["vip"], "new_list_name": "VIP", "backfill": False,
       "new_list_opt_in": "single", "removal_brake": 0.2}


def brake(stack: Stack) -> dict[str, object]:
    row = json.loads(cli(stack, "status", "vip", "--json").stdout)[0]
    found: dict[str, object] = row["brake"]
    return found


def test_the_brake_holds_half_a_list_leaving_until_released_while_enters_flow(
        stack: Stack) -> None:
    stack.write_jobs(JOB)
    stack.start_worker(concurrency=2)
    people = [f"p{i:05d}@example.com" for i in range(10_000)]
    stack.send("vip", [event(e, "vip", E, T0) for e in people])
    list_id = stack.wait_for_members("vip", set(people), timeout=180)

    leaving, staying = people[:5_000], people[5_000:]
    stack.send("vip", [event(e, "vip", X, T0 + 1) for e in leaving])
    wait_until(lambda: brake(stack).get("held"), timeout=120, message="the brake to hold")
    wait_until(lambda: brake(stack).get("waiting", 0) + 10_000 - len(stack.list_emails(list_id))
               == 5_000, timeout=60, message="every leaver removed or held")
    on_list = stack.list_emails(list_id)
    assert len(on_list) >= 8_000  # at most the brake's 20 % went before it held
    assert set(staying) <= on_list

    newcomers = [f"n{i:03d}@example.com" for i in range(100)]
    stack.send("vip", [event(e, "vip", E, T0 + 2) for e in newcomers])
    wait_until(lambda: set(newcomers) <= stack.list_emails(list_id), timeout=60,
               message="newcomers to join while removals are held")
    assert stack.list_emails(list_id) >= on_list  # nobody else left meanwhile
    assert "REMOVALS HELD by the brake" in cli(stack, "status", "vip").stdout
    health = json.loads(cli(stack, "health", "--json", ok=1).stdout)["components"]
    assert health["brake[vip]"]["ok"] is False

    released = cli(stack, "brake", "release", "vip").stdout
    assert "brake released" in released
    stack.wait_for_members("vip", {*staying, *newcomers}, timeout=120)
    assert brake(stack) == {"held": False}
    stack.assert_reconciled("vip", entered=None, members=5_100)
