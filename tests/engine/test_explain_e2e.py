"""``klaviyo-export explain JOB EMAIL`` end to end: one person's story from Redis and Klaviyo
(real workers, the sandbox, the installed CLI), for a member, a removed user, a suppressed user
and an email nobody knows."""

from __future__ import annotations

import json
from typing import Any

from core.events import Action
from tests.engine.test_audit_e2e import cli
from tests.harness import Stack, event

E, X = Action.ENTER, Action.EXIT
T0 = 1_764_000_000_000_000_000  # 2025-11-24T16:00:00Z
JOB = {"id": "vip", "audiences": ["gold", "silver"], "new_list_name": "VIP", "backfill": False,
       "new_list_opt_in": "single"}


def explain(stack: Stack, email: str) -> dict[str, Any]:
    story: dict[str, Any] = json.loads(cli(stack, "explain", "vip", email, "--json").stdout)
    return story


def test_explain_tells_each_persons_story(stack: Stack) -> None:
    stack.write_jobs(JOB)
    stack.start_worker()
    stack.send("vip", [event("ann@example.com", "gold", E, T0),
                       event("bob@example.com", "gold", E, T0),
                       event("cat@example.com", "silver", E, T0)])
    list_id = stack.wait_for_members("vip", {"ann@example.com", "bob@example.com",
                                             "cat@example.com"})
    stack.send("vip", [event("bob@example.com", "gold", X, T0 + 600 * 10**9)])
    stack.wait_for_members("vip", {"ann@example.com", "cat@example.com"})
    stack.admin("POST", "unsubscribe", json={"emails": ["cat@example.com"], "list_id": list_id})

    ann = explain(stack, "Ann@Example.com")
    assert ann["verdict"] == "on the list, as they should be"
    assert ann["audiences"] == {"gold": {"event": "entered", "at": "2025-11-24T16:00:00.000+00:00",
                                         "selected": True}}
    assert ann["told"]["words"] == "subscribed (or force-added)" and ann["told"]["at"]
    assert ann["on_list"]["member"] and ann["on_list"]["joined_group_at"]
    assert ann["klaviyo"]["consent"] == "SUBSCRIBED"

    bob = explain(stack, "bob@example.com")
    assert bob["verdict"] == "off the list, as they should be (in none of the job's audiences)"
    assert bob["audiences"]["gold"]["event"] == "exited"
    assert bob["audiences"]["gold"]["at"] == "2025-11-24T16:10:00.000+00:00"
    assert bob["told"]["words"] == "removed from the list"
    assert not bob["on_list"]["member"] and bob["klaviyo"]["profile"]

    cat = explain(stack, "cat@example.com")
    assert cat["verdict"] == "should be on the list, but Klaviyo suppresses them: " \
                             "UNSUBSCRIBE (this list)"
    assert [s["reason"] for s in cat["klaviyo"]["list_suppressions"]] == ["UNSUBSCRIBE"]
    assert not cat["on_list"]["member"]

    nobody = explain(stack, "nobody@example.com")
    assert nobody["verdict"] == "unknown: neither this job nor Klaviyo has heard of this email"
    assert (nobody["audiences"], nobody["dead_letters"]) == ({}, [])
    assert nobody["klaviyo"]["profile"] is False and not nobody["on_list"]["member"]

    text = cli(stack, "explain", "vip", "cat@example.com").stdout
    assert "audience silver: entered at 2025-11-24T16:00:00.000+00:00" in text
    assert "suppressed (this list): UNSUBSCRIBE" in text
