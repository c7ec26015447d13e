"""Awaiting confirmation (issue #15): on a double opt-in list a subscribed person is counted
in ``awaiting_confirmation``, not ``added``, until the list shows them; the moves between the
counters keep ``added - removed`` = members and exported = added + awaiting."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis

from core.jobs import parse_jobs
from core.keys import JobKeys
from sandbox.server import SandboxServer, running_sandbox
from sandbox.testing import SandboxClient
from tests.conftest import free_port
from tests.harness import jobs_toml
from worker.engine import confirm
from worker.engine.plan import applied_accepted, make_plan
from worker.klaviyo.client import KlaviyoClient
from worker.klaviyo.lists import list_members_since
from worker.state.codes import APPLIED_IN, APPLIED_WAIT, OUT, OUT_AWAITING, RETRY
from worker.state.counters import JobCounters
from worker.state.desired import Desired, DesiredState, Mark
from worker.state.jobstate import JobState, JobStateStore, Status

TS = "00000000000000000001"
WAIT, IN = f"{APPLIED_WAIT}|{TS}", f"{APPLIED_IN}|{TS}"


@pytest.fixture
def state(redis_client: redis.Redis) -> DesiredState:
    return DesiredState(redis_client, JobKeys(f"t{uuid.uuid4().hex[:8]}", "vip"))


def counts(state: DesiredState) -> tuple[int, int, int]:
    """(added, removed, awaiting_confirmation)."""
    snap = JobCounters(state.redis, state.keys.prefix, state.keys.job_id).snapshot()
    return snap.added, snap.removed, snap.awaiting_confirmation


def applied(state: DesiredState, email: str) -> str | None:
    value = state.redis.hget(state.keys.applied, email)
    return value.decode() if isinstance(value, bytes) else value


def enter(state: DesiredState, email: str, ts_ns: int = 1) -> None:
    state.record([Mark(email, "vip", "E", ts_ns, None)], 0)


def leave(state: DesiredState, email: str, ts_ns: int = 2) -> None:
    state.record([Mark(email, "vip", "X", ts_ns, None)], 0)


class TestCounterMoves:
    def test_an_accepted_subscribe_on_a_double_opt_in_list_awaits_and_is_not_added(
            self, state: DesiredState) -> None:
        state.release([("a@x.io", WAIT), ("b@x.io", WAIT)], 0)
        state.release([("a@x.io", WAIT)], 0)  # recorded again: counted once
        assert counts(state) == (0, 0, 2)

    def test_a_confirmation_moves_a_person_from_awaiting_to_added(
            self, state: DesiredState) -> None:
        state.release([("a@x.io", WAIT), ("b@x.io", WAIT)], 0)
        assert state.confirm(["a@x.io", "nobody@x.io"], 0) == (1, 0, 0)
        assert state.confirm(["a@x.io"], 0) == (0, 0, 0)  # a joiner read twice: once
        assert counts(state) == (1, 0, 1)
        assert applied(state, "a@x.io") == IN  # the fields it was sent with are kept

    def test_leaving_before_confirming_leaves_awaiting_and_is_not_a_removal(
            self, state: DesiredState) -> None:
        """Nobody was added, so nobody is removed: added - removed stays the members (0)."""
        state.release([("a@x.io", WAIT)], 0)
        state.release([("a@x.io", OUT)], 0)
        assert counts(state) == (0, 0, 0)
        assert applied(state, "a@x.io") == OUT_AWAITING

    def test_a_confirmed_person_who_leaves_is_removed(self, state: DesiredState) -> None:
        state.release([("a@x.io", WAIT)], 0)
        state.confirm(["a@x.io"], 0)
        state.release([("a@x.io", OUT)], 0)
        assert counts(state) == (1, 1, 0)
        assert applied(state, "a@x.io") == OUT

    def test_confirming_after_leaving_adds_them_and_queues_their_removal(
            self, state: DesiredState) -> None:
        """Klaviyo cannot cancel a confirmation email: a late click puts them on the list, so
        they are added (they are there) and pending again, and the removal counts."""
        enter(state, "a@x.io")
        leave(state, "a@x.io")
        state.release([("a@x.io", WAIT)], 0)
        state.release([("a@x.io", OUT)], 0)
        state.redis.delete(state.keys.pending)
        assert state.confirm(["a@x.io"], 5) == (0, 0, 1)
        assert counts(state) == (1, 0, 0)
        assert state.redis.zscore(state.keys.pending, "a@x.io") == 5
        state.release([("a@x.io", OUT)], 0)  # the flush's removal
        assert counts(state) == (1, 1, 0)

    def test_a_person_who_re_entered_before_the_late_confirmation_is_not_removed(
            self, state: DesiredState) -> None:
        enter(state, "a@x.io", 1)
        state.release([("a@x.io", WAIT)], 0)
        state.release([("a@x.io", OUT)], 0)
        state.redis.delete(state.keys.pending)
        enter(state, "a@x.io", 3)  # back in the audience (its join is pending)
        state.redis.delete(state.keys.pending)
        assert state.confirm(["a@x.io"], 5) == (0, 0, 1)
        assert state.redis.zscore(state.keys.pending, "a@x.io") is None
        assert counts(state) == (1, 0, 0)

    def test_a_subscribe_whose_answer_was_lost_is_added_when_the_list_shows_it(
            self, state: DesiredState) -> None:
        state.set_applied([("a@x.io", f"try|{TS}")])
        assert state.confirm(["a@x.io"], 0) == (0, 1, 0)
        assert counts(state) == (1, 0, 0)

    def test_a_late_wait_for_someone_already_on_the_list_keeps_them_added(
            self, state: DesiredState) -> None:
        """The pass saw them before the subscribe's answer was recorded: still a member."""
        state.set_applied([("a@x.io", f"try|{TS}")])
        state.confirm(["a@x.io"], 0)
        state.release([("a@x.io", WAIT)], 0)
        assert counts(state) == (1, 0, 0)
        assert applied(state, "a@x.io") == IN

    def test_members_and_removed_people_are_left_alone(self, state: DesiredState) -> None:
        state.release([("in@x.io", IN), ("out@x.io", IN)], 0)
        state.release([("out@x.io", OUT)], 0)
        assert state.confirm(["in@x.io", "out@x.io"], 0) == (0, 0, 0)
        assert counts(state) == (2, 1, 0)

    def test_a_retry_changes_no_counter(self, state: DesiredState) -> None:
        state.release([("a@x.io", WAIT)], 0)
        state.release([("a@x.io", RETRY)], 0)
        assert counts(state) == (0, 0, 1)


class TestPlan:
    def test_an_awaiting_member_is_never_subscribed_again(self) -> None:
        """A second subscribe would send a second confirmation email."""
        waiting = Desired("a@x.io", True, TS, {}, WAIT)
        assert make_plan([waiting]).join == []

    def test_newer_fields_of_an_awaiting_person_keep_them_awaiting(self) -> None:
        newer = Desired("a@x.io", True, "00000000000000000009", {"first_name": "A"}, WAIT)
        assert make_plan([newer]).refresh == [newer]
        assert applied_accepted(newer) == f"{APPLIED_WAIT}|00000000000000000009"

    def test_an_awaiting_person_who_leaves_is_removed(self) -> None:
        gone = Desired("a@x.io", False, TS, {}, WAIT)
        assert make_plan([gone]).leave == [gone]
        assert gone.may_be_present


# -- the pass over recent joiners, against the sandbox over HTTP -----------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with running_sandbox(port=free_port(), profile="fast", job_delay=0.05) as sb:
        yield sb


@pytest.fixture
def api_key() -> str:
    """A fresh account (its own key) per test."""
    return f"pk_test_{uuid.uuid4().hex}"


@pytest.fixture
def api(server: SandboxServer, api_key: str) -> SandboxClient:
    return SandboxClient(server.url, api_key)


def subscribed(api: SandboxClient, state: DesiredState, emails: list[str]) -> str:
    """A double opt-in list the job subscribed ``emails`` to, as a flush records it."""
    list_id = api.create_list("DOI", opt_in="double_opt_in")
    confirm.start_watermark(state, time.time() - 1)
    api.wait_subscribe(api.subscribe(list_id, emails))
    state.release([(e, WAIT) for e in emails], 0)
    return list_id


@pytest.fixture
def client(server: SandboxServer, api_key: str) -> KlaviyoClient:
    """The product's client on the same account, over HTTP."""
    return KlaviyoClient(api_key, base_url=server.url, revision="2026-07-15")


def list_calls(server: SandboxServer, api: SandboxClient) -> int:
    ops = server.sandbox.stats.snapshot()["operations"]
    return int(ops.get("get_profiles_for_list", {}).get("calls", 0))


class TestConfirmPass:
    def test_people_who_confirmed_are_added_and_the_rest_keep_waiting(
            self, api: SandboxClient, client: KlaviyoClient, state: DesiredState,
            redis_client: redis.Redis) -> None:
        emails = [f"p{i}@x.io" for i in range(5)]
        list_id = subscribed(api, state, emails)
        api.admin("POST", "confirm", {"list_id": list_id, "emails": emails[:2]})
        store = JobStateStore(redis_client, state.keys)
        outcome = confirm.confirm_pass(state, store, client, list_id)
        assert (outcome.confirmed, outcome.pages, outcome.stopped) == (2, 1, "")
        assert counts(state) == (2, 0, 3)
        again = confirm.confirm_pass(state, store, client, list_id)
        assert again.confirmed == 0 and counts(state) == (2, 0, 3)  # the overlap is harmless

    def test_one_call_per_page_of_joiners_and_the_watermark_moves(
            self, server: SandboxServer, api: SandboxClient, client: KlaviyoClient,
            state: DesiredState, redis_client: redis.Redis) -> None:
        emails = [f"q{i}@x.io" for i in range(250)]
        list_id = subscribed(api, state, emails)
        api.admin("POST", "confirm", {"list_id": list_id})
        before = list_calls(server, api)
        outcome = confirm.confirm_pass(state, JobStateStore(redis_client, state.keys),
                                       client, list_id)
        assert (outcome.confirmed, outcome.pages) == (250, 3)
        assert list_calls(server, api) - before == 3
        newest = max(m.joined_group_at for page in list_members_since(client, list_id)
                     for m in page if m.joined_group_at)
        assert confirm.watermark(state) == newest

    def test_joiners_before_the_watermark_less_the_overlap_are_not_read(
            self, api: SandboxClient, client: KlaviyoClient, state: DesiredState,
            redis_client: redis.Redis) -> None:
        emails = ["old@x.io", "new@x.io"]
        list_id = subscribed(api, state, emails)
        api.admin("POST", "confirm", {"list_id": list_id, "emails": ["old@x.io"]})
        later = datetime.now(UTC) + timedelta(seconds=confirm.OVERLAP_SECONDS + 5)
        state.redis.set(state.keys.confirm_watermark, later.isoformat())
        outcome = confirm.confirm_pass(state, JobStateStore(redis_client, state.keys),
                                       client, list_id)
        assert (outcome.joiners, outcome.confirmed) == (0, 0)

    def test_without_a_watermark_nobody_was_subscribed_and_nothing_is_read(
            self, server: SandboxServer, api: SandboxClient, client: KlaviyoClient,
            state: DesiredState, redis_client: redis.Redis) -> None:
        list_id = api.create_list("Quiet", opt_in="double_opt_in")
        before = list_calls(server, api)
        outcome = confirm.confirm_pass(state, JobStateStore(redis_client, state.keys),
                                       client, list_id)
        assert outcome.pages == 0 and list_calls(server, api) == before

    def test_passes_run_for_double_opt_in_lists_and_while_anyone_still_awaits(
            self, state: DesiredState) -> None:
        """Single opt-in and force add need none, unless people subscribed earlier to what
        was then a double opt-in list still await confirmation."""
        double = JobState(Status.READY, "L1", "", 0.0, opt_in_process="double_opt_in")
        single = JobState(Status.READY, "L1", "", 0.0, opt_in_process="single_opt_in")
        vip = parse_jobs(jobs_toml([{"id": "vip", "audiences": ["vip"]}])).get("vip")
        forced = parse_jobs(jobs_toml([{"id": "vip", "audiences": ["vip"],
                                        "force_add": True}])).get("vip")
        assert confirm.needs_pass(vip, double, state)
        assert not confirm.needs_pass(vip, single, state)
        assert not confirm.needs_pass(forced, double, state)
        state.release([("a@x.io", WAIT)], 0)
        assert confirm.needs_pass(vip, single, state)

    def test_a_pass_is_due_once_per_interval(self, state: DesiredState) -> None:
        assert confirm.due(state, 60) is True
        assert confirm.due(state, 60) is False
