"""Removals that race Klaviyo's asynchronous subscribe jobs, end to end.

A subscribe job answers 202 at once and runs later, with no bound and no status to poll; its
profile (and list membership) appears only when it runs. A removal that comes first must
wait for the profile, not conclude there is nobody to remove.
"""

from __future__ import annotations

import time

import pytest
import redis

from console.commands.status import job_status
from core.events import Action
from tests.conftest import wait_until
from tests.harness import Stack, event

E, X = Action.ENTER, Action.EXIT
T0 = 1_764_000_000_000_000_000
SECOND = 1_000_000_000


def applied(stack: Stack, job_id: str, email: str) -> str | None:
    r = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    value = r.hget(f"{stack.prefix}:job:{job_id}:applied", email)
    return str(value) if value is not None else None


def idle(stack: Stack, job_id: str) -> bool:
    r = redis.Redis.from_url(stack.redis_url)
    base = f"{stack.prefix}:job:{job_id}"
    return r.zcard(f"{base}:pending") + r.zcard(f"{base}:inflight") == 0


def status(stack: Stack, job_id: str) -> dict[str, object]:
    return job_status(redis.Redis.from_url(stack.redis_url), stack.prefix, job_id)


def exit_until_drift(stack: Stack, job_id: str, email: str) -> None:
    """Send ``email``'s exit; see the removal wait for a profile, then give up on it as drift."""
    stack.send(job_id, [event(email, "vip", X, T0 + SECOND)])
    wait_until(lambda: status(stack, job_id)["awaiting_profile"] == 1,
               timeout=30, message="the removal to wait for the profile")
    wait_until(lambda: applied(stack, job_id, email) == "out?" and idle(stack, job_id),
               timeout=30, message="the unconfirmed removal to be reported as drift")


def test_an_exit_during_a_slow_subscribe_job_removes_the_users(slow_stack: Stack) -> None:
    """Jobs take 6 s, the settle 2 s: five users exit 3.5 s after entering, and all five end
    off the list once the job has run, counted as removed, nobody left pending."""
    stack = slow_stack
    stack.extra_env["SUBSCRIBE_SETTLE_SECONDS"] = "2"
    stack.write_jobs({"id": "slow", "audiences": ["vip"], "new_list_opt_in": "single"})
    stack.start_worker()
    emails = [f"s{i}@example.com" for i in range(5)]
    stack.send("slow", [event(e, "vip", E, T0) for e in emails])
    wait_until(lambda: all((applied(stack, "slow", e) or "").startswith("in|") for e in emails),
               timeout=30, message="the subscribe job to be sent")
    time.sleep(3.5)  # the scenario itself: the exit arrives while Klaviyo's job still runs
    stack.send("slow", [event(e, "vip", X, T0 + SECOND) for e in emails])
    wait_until(lambda: stack.counters("slow").get("removed") == "5" and idle(stack, "slow"),
               timeout=60, message="all five removals to be confirmed")
    assert stack.list_emails(stack.wait_for_list("slow")) == set()
    assert {applied(stack, "slow", e) for e in emails} == {"out"}
    row = status(stack, "slow")
    assert (row["added"], row["removed"], row["pending"]) == (5, 5, 0), row
    assert (row["awaiting_profile"], row["drift"]) == (0, {}), row


@pytest.mark.parametrize("slow_sandbox", [120.0], indirect=True)
def test_a_profile_that_never_appears_is_reported_as_drift(slow_stack: Stack) -> None:
    """Past REMOVAL_WAIT_SECONDS with still no profile, the removal stops waiting: the user is
    counted as drift and shown by status, and nobody stays pending."""
    stack = slow_stack
    stack.extra_env["REMOVAL_WAIT_SECONDS"] = "3"
    stack.write_jobs({"id": "drift", "audiences": ["vip"], "new_list_opt_in": "single"})
    stack.start_worker()
    stack.send("drift", [event("late@example.com", "vip", E, T0)])
    wait_until(lambda: (applied(stack, "drift", "late@example.com") or "").startswith("in|"),
               timeout=30, message="the subscribe job to be sent")
    exit_until_drift(stack, "drift", "late@example.com")
    assert stack.counters("drift").get("drift:remove_unconfirmed") == "1"
    row = status(stack, "drift")
    assert row["drift"] == {"remove_unconfirmed": 1} and row["drift_users"] == 1, row
    assert (row["added"], row["removed"], row["awaiting_profile"]) == (1, 1, 0), row


def test_a_subscribe_that_failed_with_a_5xx_may_still_add_the_user(stack: Stack) -> None:
    """A 5xx does not prove Klaviyo did nothing: the user is recorded as possibly told
    (``try``), so their removal looks for a profile until the bound instead of giving up."""
    stack.extra_env["REMOVAL_WAIT_SECONDS"] = "3"
    stack.write_jobs({"id": "amb", "audiences": ["vip"], "new_list_opt_in": "single"})
    stack.admin("POST", "faults", json={"error_rate": 1.0, "statuses": [503],
                                        "only_operations": ["bulk_subscribe_profiles"]})
    stack.start_worker()
    stack.send("amb", [event("maybe@example.com", "vip", E, T0)])
    wait_until(lambda: (applied(stack, "amb", "maybe@example.com") or "").startswith("try|"),
               timeout=30, message="the failed subscribe to be recorded as possibly sent")
    exit_until_drift(stack, "amb", "maybe@example.com")
    row = status(stack, "amb")
    # never counted in (Klaviyo never confirmed the subscribe), so not counted out either
    assert (row["added"], row["removed"], row["drift"]) == (0, 0, {"remove_unconfirmed": 1}), row


def test_a_user_never_subscribed_and_without_a_profile_is_done_at_once(stack: Stack) -> None:
    """An exit for someone Klaviyo was never told about needs no waiting (``out0``)."""
    stack.extra_env["REMOVAL_WAIT_SECONDS"] = "600"
    stack.write_jobs({"id": "quick", "audiences": ["vip"], "new_list_opt_in": "single"})
    stack.start_worker()
    stack.send("quick", [event("never@example.com", "vip", X, T0)])
    wait_until(lambda: applied(stack, "quick", "never@example.com") == "out0"
               and idle(stack, "quick"), timeout=30, message="the exit to be applied")
    assert status(stack, "quick")["awaiting_profile"] == 0
