"""Continuous audit checks end to end (real workers and beat, Redis, the sandbox, the CLI).

Nobody runs ``audit`` here: beat reads a single opt-in list's recent joiners every
``AUDIT_INCREMENTAL_SECONDS`` (1 s in this stack alone; the harness leaves the 5-minute default
to every other stack) and reports a joiner who is in none of the job's audiences as extra
drift; and it runs a job's full audit every ``audit_every_hours`` (checked every
``AUDIT_CHECK_INTERVAL_SECONDS``). ``status`` shows what they found.
"""

from __future__ import annotations

import json
import time
from typing import Any

from core import redisconn
from core.events import Action
from tests.conftest import wait_until
from tests.engine.test_audit_e2e import T0, Hand, cli
from tests.harness import Stack, event

E = Action.ENTER
JOINERS = {"id": "joiners", "audiences": ["a"], "new_list_name": "Joiners", "backfill": False,
           "new_list_opt_in": "single", "audit_every_hours": 0}  # no full audit: only joiners
SCHEDULED = {"id": "scheduled", "audiences": ["b"], "new_list_name": "Scheduled",
             "backfill": False, "new_list_opt_in": "single",
             "audit_every_hours": 0.001}  # a full audit every 3.6 s


def status(stack: Stack, job_id: str) -> dict[str, Any]:
    row: dict[str, Any] = json.loads(cli(stack, "status", job_id, "--json").stdout)[0]
    return row


def last_audit_at(stack: Stack, job_id: str) -> float:
    r = redisconn.url_client(stack.redis_url, decode_responses=True)
    raw = r.get(f"{stack.prefix}:job:{job_id}:audit")
    return float(json.loads(raw)["at"]) if raw else 0.0


def recent_extra(stack: Stack, job_id: str) -> dict[str, str]:
    r = redisconn.url_client(stack.redis_url, decode_responses=True)
    return r.hgetall(f"{stack.prefix}:job:{job_id}:audit-recent-extra")


def test_beat_reports_a_hand_added_joiner_and_runs_scheduled_full_audits(stack: Stack) -> None:
    stack.extra_env.update({"AUDIT_CHECK_INTERVAL_SECONDS": "1", "AUDIT_INCREMENTAL_SECONDS": "1"})
    stack.write_jobs(JOINERS, SCHEDULED)
    stack.start_worker()
    stack.start_beat()
    a = [f"a{i}@example.com" for i in range(3)]
    b = [f"b{i}@example.com" for i in range(3)]
    stack.send("joiners", [event(e, "a", E, T0) for e in a])
    stack.send("scheduled", [event(e, "b", E, T0) for e in b])
    list_a = stack.wait_for_members("joiners", set(a))
    list_b = stack.wait_for_members("scheduled", set(b))

    # a marketer adds someone to each list in Klaviyo; nobody runs `audit`
    hand = Hand(stack)
    added_at = time.time()
    hand.add(list_a, ["h0@example.com"])
    hand.add(list_b, ["h1@example.com"])

    # the incremental check (beat, every second here) finds the joiner in no audience, the job's
    # own members are not drift
    wait_until(lambda: recent_extra(stack, "joiners"), timeout=60,
               message="beat's joiner check to report h0 as extra")
    assert recent_extra(stack, "joiners") == {"h0@example.com": "added_by_hand"}
    row = status(stack, "joiners")
    assert row["audit"] is None  # no full audit ran: the joiner check alone found it
    assert row["audit_recent_extra"] == {"added_by_hand": 1}
    assert ("recent joiners in no audience 1 {'added_by_hand': 1}"
            in cli(stack, "status", "joiners").stdout)

    # the scheduled job gets a full audit from beat that reads its whole list
    wait_until(lambda: last_audit_at(stack, "scheduled") > added_at, timeout=60,
               message="beat to run the scheduled job's full audit after the hand add")
    found = status(stack, "scheduled")["audit"]
    assert (found["missing"], found["extra"]) == (0, 1), found
    assert found["breakdown"]["extra"]["added_by_hand"] == 1
    first = last_audit_at(stack, "scheduled")
    wait_until(lambda: last_audit_at(stack, "scheduled") > first, timeout=60,
               message="the next scheduled full audit, audit_every_hours later")
    assert last_audit_at(stack, "joiners") == 0.0  # audit_every_hours = 0: never
