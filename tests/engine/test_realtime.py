"""Real-time export, end to end: events in, the sandbox's list and profiles exactly right."""

from __future__ import annotations

import time

import pytest

from core.events import Action
from sandbox.testing import SandboxClient
from tests.conftest import wait_until
from tests.harness import API_KEY, Stack, event

E, X, C = Action.ENTER, Action.EXIT, Action.CHANGE
T0 = 1_764_000_000_000_000_000


def ts(n: int) -> int:
    return T0 + n * 1_000_000


@pytest.fixture
def vip(stack: Stack) -> Stack:
    stack.write_jobs(
        {
            "id": "vip",
            "audiences": ["vip", "buyers"],
            "new_list_name": "VIP",
            "new_list_opt_in": "single",
            "field_map": {
                "first_name": "first_name",
                "city": "location.city",
                "ltv": "properties.ltv",
                "is_member": "properties.member",
            },
        }
    )
    stack.start_worker()
    return stack


class TestEnterExit:
    def test_enter_exit_and_reenter(self, vip: Stack) -> None:
        """A user who enters is subscribed; exiting removes them; re-entering puts them back."""
        vip.send(
            "vip",
            [event("ann@example.com", "vip", E, ts(1)), event("bob@example.com", "vip", E, ts(1))],
        )
        list_id = vip.wait_for_members("vip", {"ann@example.com", "bob@example.com"})
        vip.send("vip", [event("ann@example.com", "vip", X, ts(2))])
        vip.wait_for_members("vip", {"bob@example.com"})
        vip.send("vip", [event("ann@example.com", "vip", E, ts(3))])
        vip.wait_for_members("vip", {"ann@example.com", "bob@example.com"})
        counters = vip.counters("vip")
        assert (counters["added"], counters["removed"]) == ("3", "1")
        assert vip.job_state("vip")["list_id"] == list_id

    def test_exiting_one_of_two_audiences_keeps_the_user(self, vip: Stack) -> None:
        """A user in two selected audiences stays on the list until they leave both."""
        vip.send(
            "vip",
            [
                event("cat@example.com", "vip", E, ts(1)),
                event("cat@example.com", "buyers", E, ts(1)),
            ],
        )
        vip.wait_for_members("vip", {"cat@example.com"})
        vip.send("vip", [event("cat@example.com", "vip", X, ts(2))])
        time.sleep(1.5)  # nothing should happen: give a wrong removal the time to show
        assert vip.list_emails(vip.wait_for_list("vip")) == {"cat@example.com"}
        vip.send("vip", [event("cat@example.com", "buyers", X, ts(3))])
        vip.wait_for_members("vip", set())

    def test_fields_map_to_standard_and_custom_attributes(self, vip: Stack) -> None:
        """Mapped fields land on the Klaviyo profile: standard, location and custom properties."""
        vip.send(
            "vip",
            [
                event(
                    "Dan@Example.COM ",
                    "vip",
                    E,
                    ts(1),
                    first_name="Dan",
                    city="Oslo",
                    ltv=12.5,
                    is_member="t",
                )
            ],
        )
        vip.wait_for_members("vip", {"dan@example.com"})
        vip.send(
            "vip",
            [
                event(
                    "dan@example.com",
                    "vip",
                    C,
                    ts(2),
                    first_name="Daniel",
                    city="Oslo",
                    ltv=13,
                    is_member="f",
                )
            ],
        )
        profile = vip.wait_profile("dan@example.com", lambda p: p["first_name"] == "Daniel")
        assert profile["location"]["city"] == "Oslo"
        assert profile["properties"]["ltv"] == 13 and profile["properties"]["member"] is False

    def test_invalid_or_missing_emails_are_omitted_and_counted(self, vip: Stack) -> None:
        """Users without a valid email are not exported and are counted by reason."""
        vip.send(
            "vip",
            [
                event("not-an-email", "vip", E, ts(1)),
                event(None, "vip", E, ts(1)),
                event("eve@example.com", "vip", E, ts(1)),
            ],
        )
        vip.wait_for_members("vip", {"eve@example.com"})
        counters = vip.counters("vip")
        assert counters["omitted:invalid_email"] == "1" and counters["omitted:no_email"] == "1"

    def test_counters_count_people_however_often_a_body_is_sent(self, vip: Stack) -> None:
        """A body of 200 events (50 people without a usable email, 10 with a phone Klaviyo
        cannot take) sent five times counts 50 omitted and 10 dropped people, not 250 and 50."""
        events = [event(f"bad{i}", "vip", E, ts(1), _uid=f"u{i}") for i in range(25)]
        events += [event(None, "buyers", E, ts(1), _uid=f"n{i}") for i in range(25)]
        events += [event(f"p{i}@example.com", "vip", E, ts(1), phone="12")
                   for i in range(10)]
        good = {f"g{i}@example.com" for i in range(140)}
        events += [event(e, "vip", E, ts(1)) for e in sorted(good)]
        vip.stop_all()
        vip.write_jobs({"id": "vip", "audiences": ["vip", "buyers"], "new_list_opt_in": "single",
                        "field_map": {"phone": "phone_number"}})
        vip.start_worker()
        # when
        for _ in range(5):
            vip.send("vip", events)
        # then
        members = good | {f"p{i}@example.com" for i in range(10)}
        vip.wait_for_members("vip", members, timeout=60)
        vip.assert_reconciled("vip", entered=200, members=150)
        counters = vip.counters("vip")
        assert counters["omitted:invalid_email"] == "25" and counters["omitted:no_email"] == "25"
        assert counters["dropped:phone_invalid"] == "10"


class TestModes:
    def test_force_add_adds_without_consent(self, stack: Stack) -> None:
        """A force-add job lists users through a bulk import, without subscribing them."""
        stack.write_jobs({"id": "force", "audiences": ["vip"],
                          "new_list_opt_in": "single", "force_add": True})
        stack.start_worker()
        stack.send("force", [event(f"f{i}@example.com", "vip", E, ts(1)) for i in range(5)])
        stack.wait_for_members("force", {f"f{i}@example.com" for i in range(5)})
        stack.send("force", [event("f0@example.com", "vip", X, ts(2))])
        stack.wait_for_members("force", {f"f{i}@example.com" for i in range(1, 5)})
        stats = stack.admin("GET", "stats")
        assert "bulk_subscribe_profiles" not in str(stats["operations"].keys())

    def test_double_opt_in_list_holds_users_until_they_confirm(self, stack: Stack) -> None:
        """On a double opt-in list a subscribed user is pending, and a member once confirmed."""
        list_id = _create_list(stack, "DOI", "double_opt_in")
        stack.write_jobs({"id": "doi", "audiences": ["vip"], "list_id": list_id})
        stack.start_worker()
        stack.send("doi", [event("gus@example.com", "vip", E, ts(1))])
        jobs = _wait_subscribe_jobs(stack)
        assert jobs and stack.list_emails(list_id) == set()
        stack.admin("POST", "confirm", json={"list_id": list_id})
        stack.wait_for_members("doi", {"gus@example.com"})

    def test_a_missing_selected_list_fails_the_job_and_creates_nothing(self, stack: Stack) -> None:
        """A selected list id that does not exist marks the job failed with the reason."""
        stack.write_jobs(
            {"id": "ghost", "audiences": ["vip"], "list_id": "NOPE42", "new_list_name": "Ignored"}
        )
        stack.start_worker()
        stack.send("ghost", [event("hal@example.com", "vip", E, ts(1))])
        wait_until(
            lambda: stack.job_state("ghost").get("status") == "failed",
            timeout=20,
            message="job failed",
        )
        assert "NOPE42" in stack.job_state("ghost")["reason"]
        assert stack.admin("GET", "stats")["operations"].get("create_list") is None


def _create_list(stack: Stack, name: str, opt_in: str) -> str:
    return SandboxClient(stack.sandbox_url, API_KEY).create_list(name, opt_in)


def _wait_subscribe_jobs(stack: Stack) -> list[object]:
    def done() -> list[object]:
        return [
            j for j in stack.admin("GET", "subscribe-jobs")["data"] if j.get("status") == "complete"
        ]

    return list(wait_until(done, timeout=20, message="a completed subscribe job"))  # type: ignore[arg-type]
