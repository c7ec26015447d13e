"""Opt-outs respected, end to end (real workers, Redis, the sandbox, the installed CLI).

People who unsubscribed (through Klaviyo's own bulk-unsubscribe API) or were suppressed
before the job started are never subscribed: Klaviyo's subscribe would lift their
suppression. They keep their consent, are counted as omitted by reason and stay out when
they enter again; someone who unsubscribes later is caught by the mirror's incremental
refresh; ``resubscribe = true`` subscribes them all; ``force_add`` changes no consent.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from core.events import Action
from sandbox.testing import SandboxClient
from tests.backfill.helpers import run_start, write_jsonl
from tests.conftest import RedisServer, wait_until
from tests.engine.test_consent_e2e import double_stack
from tests.harness import API_KEY, Stack, event
from worker.klaviyo.client import fingerprint
from worker.state.optouts import OptOutMirror

E, X = Action.ENTER, Action.EXIT
T0 = 1_764_000_000_000_000_000
VIP = {"id": "vip", "audiences": ["vip"], "new_list_name": "VIP", "backfill": False}
PEOPLE = [f"p{i:02d}@example.com" for i in range(30)]
UNSUBSCRIBED = PEOPLE[:5]  # through Klaviyo's bulk unsubscribe, before the job starts
BOUNCED = PEOPLE[5:7]  # suppressed by Klaviyo (admin route): hard bounce, user suppressed
OPTED_OUT = UNSUBSCRIBED + BOUNCED
OTHERS = set(PEOPLE) - set(OPTED_OUT)


def api(stack: Stack) -> SandboxClient:
    return SandboxClient(stack.sandbox_url, API_KEY)


def bulk_unsubscribe(stack: Stack, emails: list[str], list_id: str | None = None) -> None:
    """Klaviyo's ``bulk_unsubscribe_profiles``, as another party (a preference page) calls it;
    returns once the sandbox's job finished."""
    job = api(stack).wait_subscribe(api(stack).unsubscribe(list_id, emails))
    assert job["status"] == "complete"


def make_profiles(stack: Stack, emails: list[str]) -> None:
    for email in emails:
        body = {"data": {"type": "profile", "attributes": {"email": email}}}
        assert api(stack).call("POST", "/api/profile-import", body).status_code in (200, 201)


def suppress(stack: Stack, emails: list[str], reason: str, list_id: str | None = None) -> None:
    body: dict[str, Any] = {"emails": emails, "reason": reason}
    if list_id is not None:
        body["list_id"] = list_id
    assert stack.admin("POST", "suppress", json=body)["suppressed"] == len(emails)


def marketing(stack: Stack, email: str) -> dict[str, Any]:
    """The profile's email marketing consent, read back from Klaviyo's API."""
    resp = api(stack).call("GET", "/api/profiles", **{
        "filter": f'equals(email,"{email}")', "additional-fields[profile]": "subscriptions"})
    data = resp.json()["data"]
    assert data, email
    return dict(data[0]["attributes"]["subscriptions"]["email"]["marketing"])


def omitted(stack: Stack) -> dict[str, int]:
    return {k.removeprefix("omitted:"): int(v) for k, v in stack.counters("vip").items()
            if k.startswith("omitted:")}


def mirror(stack: Stack) -> OptOutMirror:
    return OptOutMirror(redis.Redis.from_url(stack.redis_url), stack.prefix, fingerprint(API_KEY))


def backfill(stack: Stack, tmp_path: Path, emails: list[str]) -> None:
    rows = [{"email": e, "segments": ["vip"]} for e in emails]
    run_start(stack, "vip", "--from-file", str(write_jsonl(tmp_path / "vip.jsonl", rows)),
              "--wait")


def opt_out_before_the_job(stack: Stack) -> dict[str, dict[str, Any]]:
    """The K people opt out before the job starts; returns their consent as Klaviyo has it."""
    bulk_unsubscribe(stack, UNSUBSCRIBED)
    make_profiles(stack, BOUNCED)
    suppress(stack, BOUNCED[:1], "HARD_BOUNCE")
    suppress(stack, BOUNCED[1:], "USER_SUPPRESSED")
    return {e: marketing(stack, e) for e in OPTED_OUT}


def subscribe_calls(stack: Stack) -> int:
    ops = stack.admin("GET", "stats")["operations"]
    return int(ops.get("bulk_subscribe_profiles", {}).get("calls", 0))


@pytest.fixture
def dstack(redis_server: RedisServer, redis_url: str, tmp_path: Path) -> Iterator[Stack]:
    """An account whose lists are double opt-in unless asked otherwise (Klaviyo's default)."""
    yield from double_stack(redis_url, tmp_path)


class TestOptOutsRespected:
    def test_people_who_opted_out_keep_their_consent_and_are_omitted_by_reason(
            self, dstack: Stack, tmp_path: Path) -> None:
        """The issue's case: a double opt-in list created by the product, N backfilled, K of
        whom opted out earlier: the K are never sent a confirmation (never subscribed)."""
        stack = dstack
        before = opt_out_before_the_job(stack)
        stack.write_jobs({**VIP, "new_list_opt_in": "double"})
        stack.start_worker()
        stack.start_beat()  # its confirmation passes find who confirmed

        backfill(stack, tmp_path, PEOPLE)

        list_id = stack.wait_for_list("vip")
        wait_until(lambda: set(stack.admin("GET", f"lists/{list_id}/emails")["pending"])
                   == OTHERS, timeout=60, message="the others to await confirmation")
        assert omitted(stack) == {"unsubscribed": 5, "suppressed": 2}
        for email in OPTED_OUT:
            assert marketing(stack, email) == before[email], email
        stack.admin("POST", "confirm", json={"list_id": list_id})
        stack.wait_for_members("vip", OTHERS)
        wait_until(lambda: stack.counters("vip").get("added") == str(len(OTHERS)), timeout=60,
                   message="beat's confirmation pass to find who confirmed")
        stack.assert_reconciled("vip", entered=len(PEOPLE), members=len(OTHERS))

        # leaving and entering again (live events) changes nothing: still skipped, counted once
        later = time.time_ns()  # after the backfill's snapshot
        stack.send("vip", [event(e, "vip", X, later) for e in OPTED_OUT])
        stack.send("vip", [event(e, "vip", E, later + 1) for e in OPTED_OUT])
        r = redis.Redis.from_url(stack.redis_url, decode_responses=True)
        wait_until(lambda: all(str(r.hget(f"{stack.prefix}:job:vip:u:{e}", "vip"))
                               .endswith(str(later + 1)) for e in OPTED_OUT), timeout=30,
                   message="the re-enters to be recorded")
        stack.assert_reconciled("vip", entered=len(PEOPLE), members=len(OTHERS))
        assert omitted(stack) == {"unsubscribed": 5, "suppressed": 2}
        assert stack.list_emails(list_id) == OTHERS
        assert stack.admin("GET", f"lists/{list_id}/emails")["pending"] == []
        for email in OPTED_OUT:
            assert marketing(stack, email) == before[email], email

    def test_a_suppression_from_this_list_keeps_the_person_off_it_but_not_off_others(
            self, stack: Stack) -> None:
        sb = api(stack)
        ours, theirs = sb.create_list("Ours", "single_opt_in"), sb.create_list("Theirs",
                                                                                "single_opt_in")
        sb.wait_subscribe(sb.subscribe(ours, ["left@example.com"]))
        sb.wait_subscribe(sb.subscribe(theirs, ["other@example.com"]))
        suppress(stack, ["left@example.com"], "UNSUBSCRIBE", ours)  # left our list only
        suppress(stack, ["other@example.com"], "UNSUBSCRIBE", theirs)
        stack.write_jobs({"id": "vip", "audiences": ["vip"], "list_id": ours, "backfill": False})
        stack.start_worker()

        stack.send("vip", [event(e, "vip", E, T0) for e in
                           ("left@example.com", "other@example.com", "new@example.com")])

        stack.wait_for_members("vip", {"other@example.com", "new@example.com"})
        stack.assert_reconciled("vip", entered=3, members=2)
        assert omitted(stack) == {"unsubscribed": 1}
        lists = [s["list_id"] for s in marketing(stack, "left@example.com")["list_suppressions"]]
        assert lists == [ours]

    def test_someone_who_unsubscribes_after_the_fill_is_caught_by_the_refresh(
            self, stack: Stack) -> None:
        stack.extra_env["OPTOUTS_REFRESH_SECONDS"] = "1"
        stack.write_jobs(VIP)
        stack.start_worker()
        stack.start_beat()
        stack.send("vip", [event("ann@example.com", "vip", E, T0)])
        stack.wait_for_members("vip", {"ann@example.com"})
        filled = mirror(stack).state()
        assert filled.generation == 1 and mirror(stack).size() == 0

        bulk_unsubscribe(stack, ["bob@example.com"])
        wait_until(lambda: mirror(stack).size() == 1, timeout=60,
                   message="beat's refresh to read the new unsubscribe")
        assert mirror(stack).state().generation == 1  # read incrementally, not filled again

        stack.send("vip", [event("bob@example.com", "vip", E, T0)])
        wait_until(lambda: omitted(stack) == {"unsubscribed": 1}, timeout=30,
                   message="bob to be omitted as unsubscribed")
        stack.assert_reconciled("vip", entered=2, members=1)
        assert stack.list_emails(stack.wait_for_list("vip")) == {"ann@example.com"}
        assert marketing(stack, "bob@example.com")["consent"] == "UNSUBSCRIBED"

    def test_nobody_is_subscribed_until_the_mirror_was_filled(self, stack: Stack) -> None:
        """Klaviyo cannot be read: the job subscribes nobody, then catches up when it can."""
        stack.admin("POST", "faults", json={"error_rate": 1.0, "statuses": [503],
                                            "only_operations": ["get_profiles"]})
        stack.write_jobs(VIP)
        stack.start_worker()
        stack.send("vip", [event("ann@example.com", "vip", E, T0)])
        list_id = stack.wait_for_list("vip")
        calls = lambda: stack.admin("GET", "stats")["operations"]  # noqa: E731
        wait_until(lambda: calls().get("get_profiles", {}).get("calls", 0) >= 3, timeout=30,
                   message="flushes to try filling the mirror")
        assert subscribe_calls(stack) == 0 and stack.list_emails(list_id) == set()
        assert not mirror(stack).state().filled

        stack.admin("DELETE", "faults")
        stack.wait_for_members("vip", {"ann@example.com"})
        stack.assert_reconciled("vip", entered=1, members=1)


class TestJobsThatDoNotScreen:
    def test_resubscribe_subscribes_people_who_opted_out(self, stack: Stack,
                                                        tmp_path: Path) -> None:
        opt_out_before_the_job(stack)
        stack.write_jobs({**VIP, "resubscribe": True})
        stack.start_worker()

        backfill(stack, tmp_path, PEOPLE)

        stack.wait_for_members("vip", set(PEOPLE), timeout=60)
        stack.assert_reconciled("vip", entered=len(PEOPLE), members=len(PEOPLE))
        assert omitted(stack) == {}
        for email in UNSUBSCRIBED:
            assert marketing(stack, email)["consent"] == "SUBSCRIBED", email
        # the subscribe lifted the user suppression; a hard bounce stays (Klaviyo keeps it)
        assert marketing(stack, BOUNCED[1])["suppression"] == []
        assert [s["reason"] for s in marketing(stack, BOUNCED[0])["suppression"]] == [
            "HARD_BOUNCE"]
        assert not mirror(stack).state().filled  # never needed, never read

    def test_force_add_puts_them_on_the_list_without_changing_consent(
            self, stack: Stack) -> None:
        bulk_unsubscribe(stack, ["gone@example.com"])
        stack.write_jobs({**VIP, "force_add": True})
        stack.start_worker()

        stack.send("vip", [event("gone@example.com", "vip", E, T0)])

        stack.wait_for_members("vip", {"gone@example.com"})
        consent = marketing(stack, "gone@example.com")
        assert consent["consent"] == "UNSUBSCRIBED" and not consent["can_receive_email_marketing"]
        assert omitted(stack) == {}
