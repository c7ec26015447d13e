"""Event times from the future, end to end: they cannot pin a user on the list."""

from __future__ import annotations

import time

import redis

from console.commands.status import job_status
from core.events import Action, AudienceEvent
from tests.conftest import wait_until
from tests.harness import Stack, event

E, X = Action.ENTER, Action.EXIT
Y2099 = 4_070_908_800_000_000_000
Y9999 = 253_402_300_799_999_999_999


def stamped(email: str, action: Action, ts_ns: int) -> AudienceEvent:
    """An event as the webhook queues it: stamped with the receiver's clock."""
    return event(email, "vip", action, ts_ns).model_copy(update={"received_ns": time.time_ns()})


def test_a_2099_enter_then_a_real_exit_leaves_the_user_off_the_list(stack: Stack) -> None:
    """An enter stamped 2099 (from the webhook) or 9999 (queued without a receive time) still
    adds the user, at the time it was received; the real exit that follows removes them."""
    stack.write_jobs({"id": "vip", "audiences": ["vip"], "new_list_opt_in": "single"})
    stack.start_worker()
    stack.send("vip", [stamped("hook@example.com", E, Y2099),
                       event("old@example.com", "vip", E, Y9999)])
    list_id = stack.wait_for_members("vip", {"hook@example.com", "old@example.com"})
    stack.send("vip", [stamped("hook@example.com", X, time.time_ns()),
                       stamped("old@example.com", X, time.time_ns())])
    stack.wait_for_members("vip", set())
    assert stack.list_emails(list_id) == set()
    wait_until(lambda: stack.counters("vip").get("removed") == "2", timeout=30,
               message="both removals to be counted")
    row = job_status(redis.Redis.from_url(stack.redis_url), stack.prefix, "vip")
    assert row["clamped"] == {"future_ts": 2}, row
    stack.assert_reconciled("vip", entered=2, members=0)
