"""Historical load, SMS and identity conflicts end to end: real workers, Redis and the sandbox
(double opt-in by default, 409 ``duplicate_profile`` on, import errors without their payload),
everything read back from the sandbox as Klaviyo's API shows it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from core.events import Action
from sandbox.server import SandboxServer
from sandbox.testing import SandboxClient
from tests.backfill.helpers import run_start, write_jsonl
from tests.conftest import RedisServer, wait_until
from tests.harness import API_KEY, Stack, event

E = Action.ENTER
T0 = 1_764_000_000_000_000_000
VIP = {"id": "vip", "audiences": ["vip"], "new_list_name": "VIP", "backfill": False}
HISTORY = {**VIP, "new_list_opt_in": "double", "historical_import": True,
           "email_consent_field": "opted_in_at"}
BOTH = {**VIP, "new_list_opt_in": "single", "channels": ["email", "sms"],
        "phone_field": "mobile"}


@pytest.fixture
def kstack(redis_server: RedisServer, redis_url: str, tmp_path: Path) -> Iterator[Stack]:
    """A stack on an account like a real one in what these tests are about: lists double
    opt-in by default, a taken phone answered with 409, import errors without payload."""
    server = SandboxServer(speed=1.0, profile="fast", job_delay=0.1,
                           default_opt_in="double_opt_in", identity_conflicts=True,
                           import_error_payload=False).start()
    s = Stack(redis_url=redis_url, sandbox_url=server.url, workdir=tmp_path)
    yield s
    s.stop_all()
    server.stop()


def subscriptions_of(stack: Stack, email: str) -> dict[str, Any]:
    """The profile's attributes with ``subscriptions``, as Klaviyo's API returns them."""
    resp = SandboxClient(stack.sandbox_url, API_KEY).call(
        "GET", "/api/profiles", **{"filter": f'equals(email,"{email}")',
                                   "additional-fields[profile]": "subscriptions"})
    attributes: dict[str, Any] = resp.json()["data"][0]["attributes"]
    return attributes


def when(text: str) -> datetime:
    at = datetime.fromisoformat(text)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def enter(email: str, **fields: Any) -> Any:
    return event(email, "vip", E, T0, **fields)


class TestHistoricalLoad:
    def test_past_consent_joins_a_double_opt_in_list_at_once_with_its_own_date(
            self, kstack: Stack) -> None:
        """Users with a past consent date skip the confirmation step of the double opt-in
        list the product created, and Klaviyo records the Lytics date as their consent time;
        users without one (or with a future one) are omitted and counted, as the job says."""
        kstack.write_jobs({**HISTORY, "without_consent_date": "omit"})
        kstack.start_worker()
        kstack.send("vip", [enter("ann@example.com", opted_in_at="2023-04-05T06:07:08Z"),
                            enter("bob@example.com", opted_in_at=1_600_000_000_000),
                            enter("cat@example.com"),
                            enter("dan@example.com", opted_in_at="2099-01-01T00:00:00Z")])
        list_id = kstack.wait_for_members("vip", {"ann@example.com", "bob@example.com"})
        assert kstack.admin("GET", f"lists/{list_id}/emails")["pending"] == []
        list_attrs = SandboxClient(kstack.sandbox_url, API_KEY).call(
            "GET", f"/api/lists/{list_id}").json()["data"]["attributes"]
        assert list_attrs["opt_in_process"] == "double_opt_in"
        for email, lytics in (("ann@example.com", datetime(2023, 4, 5, 6, 7, 8, tzinfo=UTC)),
                              ("bob@example.com", datetime.fromtimestamp(1_600_000_000, UTC))):
            marketing = subscriptions_of(kstack, email)["subscriptions"]["email"]["marketing"]
            assert marketing["consent"] == "SUBSCRIBED"
            assert when(marketing["consent_timestamp"]) == lytics
            assert marketing["double_optin"] is False
        kstack.assert_reconciled("vip", entered=4, members=2)
        assert kstack.counters("vip")["omitted:no_consent_date"] == "2"

    def test_without_a_date_subscribe_means_the_normal_confirmation_step(
            self, kstack: Stack) -> None:
        kstack.write_jobs({**HISTORY, "without_consent_date": "subscribe"})
        kstack.start_worker()
        kstack.send("vip", [enter("ann@example.com", opted_in_at="2023-04-05T06:07:08Z"),
                            enter("cat@example.com")])
        list_id = kstack.wait_for_list("vip")
        wait_until(lambda: kstack.admin("GET", f"lists/{list_id}/emails") |
                   {"list_id": None, "count": None} == {
                       "emails": ["ann@example.com"], "pending": ["cat@example.com"],
                       "list_id": None, "count": None},
                   timeout=30, message="ann on the list, cat awaiting confirmation")
        cat = subscriptions_of(kstack, "cat@example.com")["subscriptions"]["email"]["marketing"]
        assert cat["consent"] == "NEVER_SUBSCRIBED"  # not until cat confirms


    def test_a_backfill_is_a_historical_load(self, kstack: Stack, tmp_path: Path) -> None:
        """Lytics' "Historical Load": ``start`` from a file of current members with their
        consent dates fills a double opt-in list at once with those dates; the rest omitted."""
        kstack.write_jobs({**HISTORY, "backfill": True, "without_consent_date": "omit"})
        kstack.start_worker()
        dated = {f"user{i}@example.com": f"2024-0{1 + i % 9}-1{i % 10}T08:00:00Z"
                 for i in range(40)}
        rows = [{"email": e, "opted_in_at": d} for e, d in dated.items()]
        rows += [{"email": f"nodate{i}@example.com"} for i in range(5)]
        run_start(kstack, "vip", "--from-file", str(write_jsonl(tmp_path / "m.jsonl", rows)),
                  "--wait")
        list_id = kstack.wait_for_members("vip", set(dated))
        assert kstack.admin("GET", f"lists/{list_id}/emails")["pending"] == []
        for email in ("user0@example.com", "user37@example.com"):
            marketing = subscriptions_of(kstack, email)["subscriptions"]["email"]["marketing"]
            assert when(marketing["consent_timestamp"]) == when(dated[email])
        kstack.assert_reconciled("vip", entered=45, members=40)
        assert kstack.counters("vip")["omitted:no_consent_date"] == "5"


class TestSms:
    def test_email_and_sms_are_subscribed_and_bad_phones_only_lose_sms(
            self, kstack: Stack) -> None:
        kstack.write_jobs(BOTH)
        kstack.start_worker()
        kstack.send("vip", [enter("ann@example.com", mobile="+1 (500) 555-0006"),
                            enter("bob@example.com", mobile="555-0100"),
                            enter("cat@example.com")])
        kstack.wait_for_members("vip", {"ann@example.com", "bob@example.com",
                                        "cat@example.com"})
        ann = subscriptions_of(kstack, "ann@example.com")
        assert ann["phone_number"] == "+15005550006"
        assert ann["subscriptions"]["sms"]["marketing"]["consent"] == "SUBSCRIBED"
        assert ann["subscriptions"]["email"]["marketing"]["consent"] == "SUBSCRIBED"
        for email in ("bob@example.com", "cat@example.com"):
            other = subscriptions_of(kstack, email)
            assert other["phone_number"] is None
            assert other["subscriptions"]["sms"]["marketing"]["consent"] == "NEVER_SUBSCRIBED"
            assert other["subscriptions"]["email"]["marketing"]["consent"] == "SUBSCRIBED"
        kstack.assert_reconciled("vip", entered=3, members=3)
        counters = kstack.counters("vip")
        assert (counters["dropped:phone_invalid"], counters["dropped:no_phone"]) == ("1", "1")


class TestIdentityConflicts:
    @pytest.mark.parametrize("job", [
        pytest.param({**BOTH, "field_map": {"first": "first_name"}}, id="subscribe"),
        pytest.param({**VIP, "force_add": True,
                      "field_map": {"mobile": "phone_number", "first": "first_name"}},
                     id="force_add"),
    ])
    def test_a_phone_that_is_anothers_is_left_out_and_the_user_still_exported(
            self, kstack: Stack, job: dict[str, Any]) -> None:
        """Klaviyo answers 409 ``duplicate_profile`` for the import of a profile whose phone
        another profile holds; the user is sent again without the phone: on the list, their
        other fields written, counted once as dropped, nothing dead-lettered."""
        api = SandboxClient(kstack.sandbox_url, API_KEY)
        api.wait_import(api.bulk_import([{"type": "profile", "attributes": {
            "email": "owner@example.com", "phone_number": "+15005550001"}}]))
        kstack.write_jobs(job)
        kstack.start_worker()
        kstack.send("vip", [enter("taker@example.com", mobile="+15005550001", first="Tia"),
                            enter("ann@example.com", mobile="+15005550006", first="Ann")])
        kstack.wait_for_members("vip", {"taker@example.com", "ann@example.com"})
        taker = kstack.wait_profile("taker@example.com",
                                    lambda a: a.get("first_name") == "Tia")
        assert taker["phone_number"] is None
        assert kstack.wait_profile("ann@example.com", lambda a: a.get("first_name") == "Ann")[
            "phone_number"] == "+15005550006"
        assert subscriptions_of(kstack, "owner@example.com")["phone_number"] == "+15005550001"
        kstack.assert_reconciled("vip", entered=2, members=2)
        counters = kstack.counters("vip")
        assert counters["dropped:phone_number_conflict"] == "1"
        assert int(counters.get("failed", 0)) == int(counters.get("dead_lettered", 0)) == 0
