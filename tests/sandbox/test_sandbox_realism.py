"""Conformance: the default (realistic) sandbox behaves as a real Klaviyo account does.

Each test names its source: the OpenAPI document (``spec``), a Klaviyo guide or help
article, or a public issue thread (see ../shared/reference/klaviyo-behaviour.md and the
table in docs/sandbox.md). Only knobs that the test is *not* about are overridden
(``job_delay``, ``latency``) to keep the suite quick; every other behaviour is the
realistic default. Every Klaviyo answer is validated against the bundled OpenAPI document.
"""

from __future__ import annotations

import argparse
import math
import random
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from contract.operations import BY_NAME, GET_LISTS, Operation
from sandbox.cli import add_arguments, check
from sandbox.cli import realism as cli_realism
from sandbox.clock import Clock
from sandbox.extra_operations import SERVED_BY_NAME
from sandbox.identity import fingerprint
from sandbox.ratelimit import Limiter
from sandbox.realism import FAST, REALISTIC, Delay, build
from sandbox.server import SandboxServer, running_sandbox
from sandbox.testing import SandboxClient
from sandbox.validation import check_response
from tests.conftest import free_port, wait_until

QUICK = {"job_delay": "uniform:0.02,0.1", "latency": 0, "seed": 14}
PROFILES = "/data/attributes/profiles/data"
MARKETING = "subscriptions.email.marketing"


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with running_sandbox(port=free_port(), **QUICK) as sb:
        yield sb


@pytest.fixture
def api(server: SandboxServer) -> SandboxClient:
    return SandboxClient(server.url, f"pk_real_{time.monotonic_ns()}")


def checked(resp: requests.Response, op: str) -> Any:
    """The answer's JSON after validating it against the spec (None when empty)."""
    document = resp.json() if resp.content else None
    check_response(SERVED_BY_NAME[op], resp.status_code, document)
    return document


def profile_of(api: SandboxClient, email: str) -> dict[str, Any]:
    resp = api.call("GET", "/api/profiles", **{"filter": f'equals(email,"{email}")',
                                              "additional-fields[profile]": "subscriptions"})
    assert resp.status_code == 200, resp.text
    return dict(checked(resp, "get_profiles")["data"][0])


def marketing(api: SandboxClient, email: str) -> dict[str, Any]:
    return dict(profile_of(api, email)["attributes"]["subscriptions"]["email"]["marketing"])


def member_ids(api: SandboxClient, list_id: str) -> list[str]:
    resp = api.call("GET", f"/api/lists/{list_id}/relationships/profiles")
    return [m["id"] for m in checked(resp, "get_profile_ids_for_list")["data"]]


def unsubscribe_body(emails: list[str], list_id: str | None) -> dict[str, Any]:
    data: dict[str, Any] = {"type": "profile-subscription-bulk-delete-job", "attributes": {
        "profiles": {"data": [{"type": "profile", "attributes": {
            "email": e, "subscriptions": {"email": {"marketing": {"consent": "UNSUBSCRIBED"}}}}}
            for e in emails]}}}
    if list_id is not None:
        data["relationships"] = {"list": {"data": {"type": "list", "id": list_id}}}
    return {"data": data}


def bulk_unsubscribe(api: SandboxClient, emails: list[str], list_id: str | None) -> None:
    resp = api.call("POST", "/api/profile-subscription-bulk-delete-jobs",
                    unsubscribe_body(emails, list_id))
    assert resp.status_code == 202, resp.text
    checked(resp, "bulk_unsubscribe_profiles")
    api.wait_subscribe(resp.headers["X-Sandbox-Job-Id"])


# -- the profile ---------------------------------------------------------------------------


def test_realistic_is_the_default_everywhere_and_fast_is_asked_for() -> None:
    """``SandboxServer()`` (and the CLI, see test_sandbox_process) is a real account;
    ``profile="fast"`` is today's instant sandbox; each knob overrides either."""
    assert SandboxServer().realism == REALISTIC
    assert SandboxServer(profile="fast").realism == FAST
    tuned = SandboxServer(profile="fast", job_delay=1.5, foreign_share=0.2).realism
    assert (tuned.job_delay, tuned.foreign_share, tuned.default_opt_in) == (
        Delay("constant", 1.5), 0.2, "single_opt_in")
    with pytest.raises(ValueError, match="unknown sandbox knob"):
        build("realistic", jobs_delay=1)


def test_the_admin_route_shows_the_knobs_in_force(server: SandboxServer) -> None:
    shown = requests.get(f"{server.url}/_sandbox/realism", timeout=5).json()
    assert shown["profile"] == "realistic"
    assert (shown["default_opt_in"], shown["window_phase"]) == ("double_opt_in", "random")
    assert shown["job_delay"] == "uniform:0.02,0.1"


# -- lists and consent ---------------------------------------------------------------------


def test_a_list_without_opt_in_process_is_double_opt_in(api: SandboxClient,
                                                        server: SandboxServer) -> None:
    """spec ``create_list`` ("If not provided, uses account default"); help centre
    115005251108: "Lists are set to double opt-in by default in all Klaviyo accounts";
    spec ``bulk_subscribe_profiles``: double opt-in profiles join once they confirm."""
    resp = api.call("POST", "/api/lists", {"data": {"type": "list", "attributes": {"name": "D"}}})
    created = checked(resp, "create_list")
    assert created["data"]["attributes"]["opt_in_process"] == "double_opt_in"
    list_id = created["data"]["id"]

    api.wait_subscribe(api.subscribe(list_id, ["pending@example.com"]))
    assert member_ids(api, list_id) == []
    assert marketing(api, "pending@example.com")["consent"] == "NEVER_SUBSCRIBED"

    assert server.confirm(list_id, ["pending@example.com"]) == 1
    assert member_ids(api, list_id) == [profile_of(api, "pending@example.com")["id"]]
    confirmed = marketing(api, "pending@example.com")
    assert (confirmed["consent"], confirmed["double_optin"]) == ("SUBSCRIBED", True)


def test_removing_a_pending_person_does_not_cancel_their_confirmation(
        api: SandboxClient, server: SandboxServer) -> None:
    """Source: klaviyo-behaviour.md ("There is no API to cancel a pending confirmation");
    spec ``remove_profiles_from_list`` removes list *members*. The email already sent still
    works: a person removed while awaiting confirmation joins when they click."""
    resp = api.call("POST", "/api/lists", {"data": {"type": "list", "attributes": {"name": "P"}}})
    list_id = checked(resp, "create_list")["data"]["id"]
    api.wait_subscribe(api.subscribe(list_id, ["late@example.com"]))
    pid = profile_of(api, "late@example.com")["id"]
    body = {"data": [{"type": "profile", "id": pid}]}
    resp = api.call("DELETE", f"/api/lists/{list_id}/relationships/profiles", body)
    assert resp.status_code == 204
    assert member_ids(api, list_id) == []
    assert server.confirm(list_id, ["late@example.com"]) == 1
    assert member_ids(api, list_id) == [pid]


@pytest.mark.parametrize(("enabled", "expected"), [(True, "single_opt_in"),
                                                    (False, "double_opt_in")])
def test_a_single_opt_in_request_is_honoured_only_where_the_account_enables_it(
        enabled: bool, expected: str) -> None:
    """help centre 115005251108: "The ability to make a list single opt-in is disabled by
    default"; a request for single opt-in on such an account gives a double opt-in list, and
    reading the list back is the only way to know."""
    with running_sandbox(port=free_port(), **{**QUICK, "single_opt_in_enabled": enabled}) as sb:
        api = SandboxClient(sb.url, "pk_real_optin")
        body = {"data": {"type": "list",
                         "attributes": {"name": "S", "opt_in_process": "single_opt_in"}}}
        created = checked(api.call("POST", "/api/lists", body), "create_list")
        list_id = created["data"]["id"]
        assert created["data"]["attributes"]["opt_in_process"] == expected
        read = checked(api.call("GET", f"/api/lists/{list_id}"), "get_list")
        assert read["data"]["attributes"]["opt_in_process"] == expected


def test_a_share_of_pending_people_confirm_by_themselves() -> None:
    """help centre 115005251108: a person joins a double opt-in list "whenever" they confirm,
    possibly never; ``self_confirm_share`` of them do, each after ``self_confirm_delay``."""
    with running_sandbox(port=free_port(), self_confirm_share=0.5,
                         self_confirm_delay="uniform:0.05,0.3", **QUICK) as sb:
        api = SandboxClient(sb.url, "pk_real_self")
        list_id = api.create_list("Self")
        emails = [f"p{i}@example.com" for i in range(40)]
        api.wait_subscribe(api.subscribe(list_id, emails))
        wait_until(lambda: len(sb.list_emails(list_id)) >= 5, 5, message="people to confirm")
        # every self-confirmation is due within 0.3 s; the others never confirm
        assert not wait_until(lambda: len(sb.list_emails(list_id)) == 40, 1.0, fail=False)
        assert 5 <= len(sb.list_emails(list_id)) <= 35  # about half of 40


# -- subscriptions and suppressions -----------------------------------------------------------


def test_profiles_carry_subscriptions_with_suppressions(api: SandboxClient,
                                                        server: SandboxServer) -> None:
    """spec schemas ``EmailMarketing`` (``can_receive_email_marketing``: "True if the
    profile does not have any global suppressions"), ``EmailMarketingSuppression`` and
    ``EmailMarketingListSuppression``; returned with ``additional-fields[profile]``."""
    list_id = api.create_list("S", "single_opt_in")
    api.wait_subscribe(api.subscribe(list_id, ["bounce@example.com", "leave@example.com",
                                               "stay@example.com"]))
    server.suppress(["bounce@example.com"], "HARD_BOUNCE")
    requests.post(f"{server.url}/_sandbox/unsubscribe", json={
        "emails": ["leave@example.com"], "list_id": list_id}, timeout=5).raise_for_status()

    bounced = marketing(api, "bounce@example.com")
    assert bounced["can_receive_email_marketing"] is False
    assert [s["reason"] for s in bounced["suppression"]] == ["HARD_BOUNCE"]
    left = marketing(api, "leave@example.com")
    assert left["can_receive_email_marketing"] is True  # a list suppression is not global
    assert [(s["list_id"], s["reason"]) for s in left["list_suppressions"]] == [
        (list_id, "UNSUBSCRIBE")]
    stay = marketing(api, "stay@example.com")
    assert (stay["consent"], stay["suppression"], stay["list_suppressions"]) == (
        "SUBSCRIBED", [], [])
    assert profile_of(api, "leave@example.com")["id"] not in member_ids(api, list_id)


def test_subscribing_lifts_exactly_unsubscribe_spam_and_user_suppressed(
        api: SandboxClient, server: SandboxServer) -> None:
    """spec ``bulk_subscribe_profiles``: "This API will remove any UNSUBSCRIBE,
    SPAM_REPORT or USER_SUPPRESSED suppressions" (the schema's enum spells the second
    SPAM_COMPLAINT); HARD_BOUNCE and INVALID_EMAIL stay."""
    reasons = ["HARD_BOUNCE", "INVALID_EMAIL", "SPAM_COMPLAINT", "UNSUBSCRIBE",
               "USER_SUPPRESSED"]
    emails = [f"{r.lower()}@example.com" for r in reasons]
    api.call("POST", "/api/profile-import", {"data": {"type": "profile",
                                                      "attributes": {"email": emails[0]}}})
    list_id = api.create_list("Lift", "single_opt_in")
    api.wait_subscribe(api.subscribe(list_id, emails))
    for reason, email in zip(reasons, emails, strict=True):
        server.suppress([email], reason)
    assert all(marketing(api, e)["can_receive_email_marketing"] is False for e in emails)

    api.wait_subscribe(api.subscribe(list_id, emails))
    left = {r: [s["reason"] for s in marketing(api, e)["suppression"]]
            for r, e in zip(reasons, emails, strict=True)}
    assert left == {"HARD_BOUNCE": ["HARD_BOUNCE"], "INVALID_EMAIL": ["INVALID_EMAIL"],
                    "SPAM_COMPLAINT": [], "UNSUBSCRIBE": [], "USER_SUPPRESSED": []}
    assert marketing(api, emails[3])["consent"] == "SUBSCRIBED"


def test_get_profiles_filters_on_suppressions(api: SandboxClient, server: SandboxServer) -> None:
    """spec ``get_profiles`` filter: ``subscriptions.email.marketing.suppression.reason``
    (equals), ``.suppression.timestamp`` (greater/less), and ``list_suppressions``
    ``reason``/``list_id``/``timestamp``."""
    list_id = api.create_list("F", "single_opt_in")
    api.wait_subscribe(api.subscribe(list_id, ["f1@example.com", "f2@example.com",
                                               "f3@example.com"]))
    before = profile_of(api, "f1@example.com")["attributes"]["created"]
    server.suppress(["f1@example.com"], "HARD_BOUNCE")
    server.suppress(["f2@example.com"], "UNSUBSCRIBE", list_id)
    ids = {e: profile_of(api, e)["id"] for e in ("f1@example.com", "f2@example.com")}

    def found(expression: str) -> list[str]:
        resp = api.call("GET", "/api/profiles", filter=expression)
        assert resp.status_code == 200, resp.text
        return [p["id"] for p in checked(resp, "get_profiles")["data"]]

    assert found(f'equals({MARKETING}.suppression.reason,"HARD_BOUNCE")') == [
        ids["f1@example.com"]]
    assert found(f"greater-than({MARKETING}.suppression.timestamp,{before})") == [
        ids["f1@example.com"]]
    assert found(f"less-than({MARKETING}.suppression.timestamp,2001-01-01T00:00:00Z)") == []
    assert found(f'equals({MARKETING}.list_suppressions.list_id,"{list_id}")') == [
        ids["f2@example.com"]]
    assert found(f'and(equals(email,"f2@example.com"),'
                 f'equals({MARKETING}.list_suppressions.reason,"UNSUBSCRIBE"))') == [
        ids["f2@example.com"]]
    bad = api.call("GET", "/api/profiles", filter=f'equals({MARKETING}.suppression.timestamp,"x")')
    assert bad.status_code == 400
    assert checked(bad, "get_profiles")["errors"][0]["source"] == {"parameter": "filter"}


def test_bulk_unsubscribe_is_global_for_whoever_is_not_on_the_list(
        api: SandboxClient) -> None:
    """spec ``bulk_unsubscribe_profiles``: "Profiles not in the specified list will be
    globally unsubscribed"; those on it are removed from it."""
    list_id = api.create_list("U", "single_opt_in")
    api.wait_subscribe(api.subscribe(list_id, ["onlist@example.com"]))
    other = api.create_list("Other", "single_opt_in")
    api.wait_subscribe(api.subscribe(other, ["elsewhere@example.com"]))

    bulk_unsubscribe(api, ["onlist@example.com", "elsewhere@example.com"], list_id)
    on = marketing(api, "onlist@example.com")
    assert (on["consent"], on["suppression"]) == ("SUBSCRIBED", [])
    assert [s["list_id"] for s in on["list_suppressions"]] == [list_id]
    assert member_ids(api, list_id) == []
    off = marketing(api, "elsewhere@example.com")
    assert (off["consent"], off["can_receive_email_marketing"]) == ("UNSUBSCRIBED", False)
    assert [s["reason"] for s in off["suppression"]] == ["UNSUBSCRIBE"]
    capped = api.call("POST", "/api/profile-subscription-bulk-delete-jobs",
                      unsubscribe_body([f"c{i}@example.com" for i in range(101)], None))
    assert capped.status_code == 400  # 100 per call


# -- asynchronous jobs -----------------------------------------------------------------------


def test_the_default_job_delay_is_seconds_with_a_long_tail() -> None:
    """Klaviyo community threads on large imports: jobs take seconds to minutes."""
    rng = random.Random(3)
    draws = sorted(REALISTIC.job_delay.draw(rng) for _ in range(4000))
    median, p99 = draws[len(draws) // 2], draws[int(len(draws) * 0.99)]
    assert 2.0 <= median <= 4.5, median
    assert p99 >= 20.0, p99
    assert draws[-1] <= 120.0


def test_the_short_delay_keeps_the_realistic_shape_with_a_shorter_median() -> None:
    """The product's suite runs ``job_delay="short"`` (docs/sandbox.md): same log-normal
    shape (sigma 1, a tail), a shorter median and cap; ``"realistic"`` names the default."""
    assert Delay.parse("realistic") == REALISTIC.job_delay
    short = Delay.parse("short")
    assert (short.kind, short.b) == (REALISTIC.job_delay.kind, REALISTIC.job_delay.b)
    assert short.a == pytest.approx(REALISTIC.job_delay.a / 7.5) and short.cap == 8.0
    assert build(job_delay="short").job_delay == short
    with pytest.raises(ValueError, match="short"):
        Delay.parse("shortest")


def test_jobs_of_one_account_complete_out_of_arrival_order() -> None:
    """Each job draws its own delay: a later job can finish first."""
    with running_sandbox(port=free_port(), **{**QUICK, "job_delay": "uniform:0.05,1.0"}) as sb:
        api = SandboxClient(sb.url, "pk_real_order")
        list_id = api.create_list("O", "single_opt_in")
        jobs = [api.subscribe(list_id, [f"o{i}@example.com"]) for i in range(8)]
        done = [api.wait_subscribe(job) for job in jobs]
        finished = [d["completed_at"] for d in done]
        assert all(d["status"] == "complete" for d in done)
        assert finished != sorted(finished)


# -- rate limits and the network -------------------------------------------------------------


class StoppedClock(Clock):
    """Virtual time that moves only when a test moves it."""

    def __init__(self, now: float) -> None:
        super().__init__(1.0)
        self.now = now

    def virtual(self) -> float:
        return self.now


def test_windows_start_at_a_random_phase_per_account() -> None:
    """Klaviyo's guide "Rate limits, status codes, and errors" says windows are fixed but
    not how they align: the sandbox does not align them on the epoch minute."""
    clock = StoppedClock(6_000_000.0)  # an epoch-minute boundary
    limiter = Limiter(clock, REALISTIC, random.Random(5))
    phases = {limiter.phase(a)[1] for a in ("acct-a", "acct-b", "acct-c")}
    assert len(phases) == 3 and all(0 <= p < 60 for p in phases)
    steady_phase = limiter.phase("acct-a")[1]
    decision = limiter.take("acct-a", GET_LISTS)
    assert math.isclose(decision.reset, steady_phase, abs_tol=1e-6)  # now is a minute
    epoch = Limiter(clock, FAST).take("acct-a", GET_LISTS)
    assert math.isclose(epoch.reset, 60.0)


def test_rate_limit_headers_follow_the_accounts_phase(server: SandboxServer) -> None:
    """Same guide: ``RateLimit-Limit/Remaining/Reset`` describe the steady window."""
    api = SandboxClient(server.url, "pk_real_phase")
    resp = api.call("GET", "/api/lists")
    checked(resp, "get_lists")
    phase = server.sandbox.limiter.phase(fingerprint("pk_real_phase"))[1]
    expected = (phase - time.time()) % 60
    assert abs(int(resp.headers["RateLimit-Reset"]) - math.ceil(expected)) <= 1
    assert int(resp.headers["RateLimit-Limit"]) == 750
    assert int(resp.headers["RateLimit-Remaining"]) < 750


def test_the_admin_route_shows_an_accounts_phase_as_reset_counts_to_it(
        server: SandboxServer) -> None:
    """``GET /_sandbox/windows/{fingerprint}`` (a benchmark's yardstick) names the phase
    the limiter uses: ``RateLimit-Reset`` counts to the steady window it gives."""
    api = SandboxClient(server.url, "pk_real_windows")
    shown = api.admin("GET", f"windows/{fingerprint('pk_real_windows')}")
    assert shown["steady"] == server.sandbox.limiter.phase(fingerprint("pk_real_windows"))[1]
    assert 0 <= shown["burst"] < 1 and 0 <= shown["steady"] < 60
    resp = api.call("GET", "/api/lists")
    expected = (shown["steady"] - time.time()) % 60
    assert abs(int(resp.headers["RateLimit-Reset"]) - math.ceil(expected)) <= 1


def test_a_foreign_client_uses_its_share_of_every_window() -> None:
    """Same guide: every private key of an account shares its quota, so other
    integrations use the same budget; ``foreign_share`` plays one."""
    clock = StoppedClock(0.0)
    realism = build("realistic", window_phase="epoch", foreign_share=0.4)
    limiter = Limiter(clock, realism)
    op = Operation("x", "GET", "/x", burst=100, steady=100)
    clock.now = 30.0  # half of the steady window: the foreign client made 20 of its 40
    first = limiter.take("acct", op)
    assert (first.allowed, first.remaining) == (True, 100 - 20 - 1)
    clock.now = 59.5  # nearly all of its 40: our 1 + its 39 of 100
    assert limiter.take("acct", op).remaining == 100 - 39 - 2
    taken = 2
    while limiter.take("acct", op).allowed:
        taken += 1
        assert taken <= 100
    assert taken == 100 - 39  # the rest of the quota, not all of it
    refused = limiter.take("acct", op)
    assert refused.exceeded == "steady" and math.isclose(refused.retry_after, 0.5)


def test_every_call_has_network_latency() -> None:
    """Every call crosses a network; ``latency`` (realistic default: a log-normal around
    50 ms) is drawn per call."""
    assert REALISTIC.latency.kind == "lognormal" and REALISTIC.latency.a > 0
    with running_sandbox(port=free_port(), **{**QUICK, "latency": 0.25}) as sb:
        api = SandboxClient(sb.url, "pk_real_latency")
        started = time.monotonic()
        assert api.call("GET", "/api/lists").status_code == 200
        assert time.monotonic() - started >= 0.25


# -- profile writes ------------------------------------------------------------------------


def test_a_phone_number_of_another_profile_is_409_duplicate_profile(api: SandboxClient) -> None:
    """klaviyo-api-node #75: profile-import with a new email and another profile's phone
    answers 409 ``duplicate_profile`` with ``meta.duplicate_profile_id``."""
    first = api.call("POST", "/api/profile-import", {"data": {"type": "profile", "attributes": {
        "email": "owner@example.com", "phone_number": "+15005550101"}}})
    owner = checked(first, "create_or_update_profile")["data"]["id"]
    clash = api.call("POST", "/api/profile-import", {"data": {"type": "profile", "attributes": {
        "email": "newcomer@example.com", "phone_number": "+15005550101"}}})
    assert clash.status_code == 409
    error = checked(clash, "create_or_update_profile")["errors"][0]
    assert (error["code"], error["meta"]) == ("duplicate_profile",
                                              {"duplicate_profile_id": owner})
    external = api.call("POST", "/api/profile-import", {"data": {"type": "profile",
                                                                 "attributes": {
        "email": "owner@example.com", "external_id": "x-1"}}})
    assert external.status_code == 200
    taken = api.call("POST", "/api/profile-import", {"data": {"type": "profile", "attributes": {
        "email": "third@example.com", "external_id": "x-1"}}})
    assert taken.status_code == 409


def test_a_malformed_profile_fails_the_whole_bulk_import(api: SandboxClient) -> None:
    """rudderlabs/rudder-server PR #7107: one profile that fails synchronous validation
    rejects the whole job with a 400 whose pointers name each bad profile's index."""
    profiles = [{"type": "profile", "attributes": {"email": "good@example.com"}},
                {"type": "profile", "attributes": {"email": "not-an-email"}},
                {"type": "profile", "attributes": {"email": "fine@example.com"}},
                {"type": "profile", "attributes": {"phone_number": "555-0100"}}]
    resp = api.call("POST", "/api/profile-bulk-import-jobs", {"data": {
        "type": "profile-bulk-import-job", "attributes": {"profiles": {"data": profiles}}}})
    assert resp.status_code == 400
    pointers = [e["source"]["pointer"] for e in checked(resp, "bulk_import_profiles")["errors"]]
    assert pointers == [f"{PROFILES}/1/attributes/email", f"{PROFILES}/3/attributes/phone_number"]
    looked = api.call("GET", "/api/profiles", filter='equals(email,"good@example.com")')
    assert looked.json()["data"] == []


def test_bulk_import_does_not_clear_a_field_sent_as_null(api: SandboxClient) -> None:
    """Klaviyo's bulk import guide: unlike profile-import, null does not clear a field."""
    api.call("POST", "/api/profile-import", {"data": {"type": "profile", "attributes": {
        "email": "nulls@example.com", "first_name": "Ann", "properties": {"tier": "gold"}}}})
    job = api.bulk_import([{"type": "profile", "attributes": {
        "email": "nulls@example.com", "first_name": None, "last_name": "Lee",
        "properties": {"tier": None}}}])
    assert api.wait_import(job)["status"] == "complete"
    attributes = profile_of(api, "nulls@example.com")["attributes"]
    assert (attributes["first_name"], attributes["last_name"]) == ("Ann", "Lee")
    assert attributes["properties"] == {"tier": "gold"}


def test_import_errors_need_not_carry_the_original_payload(api: SandboxClient) -> None:
    """spec ``ImportErrorResponseObjectResource``: ``original_payload`` is optional and
    nullable; a client must identify the profile by the pointer's index."""
    api.call("POST", "/api/profile-import", {"data": {"type": "profile", "attributes": {
        "email": "holder@example.com", "phone_number": "+15005550202"}}})
    job = api.bulk_import([
        {"type": "profile", "attributes": {"email": "ok@example.com"}},
        {"type": "profile", "attributes": {"email": "taker@example.com",
                                           "phone_number": "+15005550202"}}])
    assert api.wait_import(job)["failed_count"] == 1
    resp = api.call("GET", f"/api/profile-bulk-import-jobs/{job}/import-errors")
    error = checked(resp, "get_errors_for_bulk_import_profiles_job")["data"][0]["attributes"]
    assert "original_payload" not in error
    assert error["source"]["pointer"].startswith(f"{PROFILES}/1")


def test_a_subscribe_job_with_an_invalid_email_is_refused_up_front(api: SandboxClient) -> None:
    """Unverified (a knob): clients such as segmentio/action-destinations PRs #3792 and
    #4010 validate emails before calling because Klaviyo refuses the request; the
    sandbox answers 400 at once, naming the profile, and queues nothing."""
    list_id = api.create_list("Bad", "single_opt_in")
    body = {"data": {"type": "profile-subscription-bulk-create-job", "attributes": {
        "profiles": {"data": [
            {"type": "profile", "attributes": {"email": "ok@example.com", "subscriptions": {
                "email": {"marketing": {"consent": "SUBSCRIBED"}}}}},
            {"type": "profile", "attributes": {"email": "nope@", "subscriptions": {
                "email": {"marketing": {"consent": "SUBSCRIBED"}}}}}]}},
        "relationships": {"list": {"data": {"type": "list", "id": list_id}}}}}
    resp = api.call("POST", "/api/profile-subscription-bulk-create-jobs", body)
    assert resp.status_code == 400
    errors = checked(resp, "bulk_subscribe_profiles")["errors"]
    assert [e["source"]["pointer"] for e in errors] == [f"{PROFILES}/1/attributes/email"]


def test_a_fronting_proxy_can_answer_403_with_an_html_page(server: SandboxServer) -> None:
    """Peers' issue threads: a proxy in front of Klaviyo answers some cloud addresses with
    an HTML challenge page (403), which is not a revoked key."""
    api = SandboxClient(server.url, "pk_real_challenge")
    server.set_faults(challenge_rate=1.0)
    try:
        resp = api.call("GET", "/api/lists")
    finally:
        server.clear_faults()
    assert resp.status_code == 403
    assert resp.headers["content-type"].startswith("text/html")
    assert resp.text.startswith("<!DOCTYPE html>")


def test_every_product_operation_is_still_served() -> None:
    """The sandbox serves the product's table plus bulk unsubscribe."""
    assert set(BY_NAME) < set(SERVED_BY_NAME)
    assert set(SERVED_BY_NAME) - set(BY_NAME) == {"bulk_unsubscribe_profiles"}


def test_the_command_line_defaults_to_realistic_and_takes_knobs() -> None:
    """``klaviyo-export sandbox`` / ``python -m sandbox``: ``--profile`` and ``--knob``."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert cli_realism(parser.parse_args([])) == REALISTIC
    fast = cli_realism(parser.parse_args(["--profile", "fast", "--job-delay", "lognormal:1,0.5",
                                      "--knob", "foreign_share=0.3",
                                      "--knob", "identity_conflicts=true"]))
    assert (fast.profile, fast.job_delay, fast.foreign_share, fast.identity_conflicts) == (
        "fast", Delay("lognormal", 1.0, 0.5), 0.3, True)
    assert "NAME=VALUE" in (check(parser.parse_args(["--knob", "nope=1"])) or "")
    assert check(parser.parse_args(["--job-delay", "-1"])) is not None


def _subscribe_body(list_id: str, profiles: list[dict[str, Any]],
                    historical: bool = False) -> dict[str, Any]:
    return {"data": {"type": "profile-subscription-bulk-create-job", "attributes": {
        "historical_import": historical, "profiles": {"data": profiles}},
        "relationships": {"list": {"data": {"type": "list", "id": list_id}}}}}


def _person(email: str, *, phone: str | None = None, email_at: str | None = None,
            sms_at: str | None = None, sms: bool = False) -> dict[str, Any]:
    channels: dict[str, Any] = {"email": {"marketing": {"consent": "SUBSCRIBED"}}}
    if email_at:
        channels["email"]["marketing"]["consented_at"] = email_at
    if sms:
        channels["sms"] = {"marketing": {"consent": "SUBSCRIBED"}}
        if sms_at:
            channels["sms"]["marketing"]["consented_at"] = sms_at
    attributes: dict[str, Any] = {"email": email, "subscriptions": channels}
    if phone:
        attributes["phone_number"] = phone
    return {"type": "profile", "attributes": attributes}


def test_historical_import_joins_a_double_opt_in_list_with_the_consent_time_given(
        api: SandboxClient) -> None:
    """spec ``bulk_subscribe_profiles``: "If this flag is set true, profiles being subscribed
    will bypass double opt-in emails and be subscribed immediately"; spec
    ``SubscriptionParameters.consented_at``: "when the profile's consent was gathered"."""
    list_id = api.create_list("History", "double_opt_in")
    profiles = [_person("h@example.com", phone="+15005550006", email_at="2023-04-05T06:07:08Z",
                        sms=True, sms_at="2022-01-02T03:04:05+00:00")]
    resp = api.call("POST", "/api/profile-subscription-bulk-create-jobs",
                    _subscribe_body(list_id, profiles, historical=True))
    assert resp.status_code == 202, resp.text
    api.wait_subscribe(resp.headers["X-Sandbox-Job-Id"])
    shown = api.admin("GET", f"lists/{list_id}/emails")
    assert (shown["emails"], shown["pending"]) == (["h@example.com"], [])
    subs = profile_of(api, "h@example.com")["attributes"]["subscriptions"]
    assert (subs["email"]["marketing"]["consent"],
            subs["email"]["marketing"]["consent_timestamp"]) == ("SUBSCRIBED",
                                                                 "2023-04-05T06:07:08Z")
    assert subs["email"]["marketing"]["double_optin"] is False
    assert (subs["sms"]["marketing"]["consent"],
            subs["sms"]["marketing"]["consent_timestamp"]) == ("SUBSCRIBED",
                                                               "2022-01-02T03:04:05+00:00")


def test_consented_at_without_historical_import_is_refused(api: SandboxClient) -> None:
    """spec ``SubscriptionParameters.consented_at``: "if the historical_import flag is not
    included, providing any value for this field will raise an error"."""
    list_id = api.create_list("NoHistory", "single_opt_in")
    profiles = [_person("ok@example.com"),
                _person("dated@example.com", email_at="2023-04-05T06:07:08Z")]
    resp = api.call("POST", "/api/profile-subscription-bulk-create-jobs",
                    _subscribe_body(list_id, profiles))
    assert resp.status_code == 400
    errors = checked(resp, "bulk_subscribe_profiles")["errors"]
    assert errors[0]["source"]["pointer"] == (
        f"{PROFILES}/1/attributes/subscriptions/email/marketing/consented_at")
    assert api.list_emails(list_id) == []


def test_an_sms_subscription_needs_the_phone_number(api: SandboxClient) -> None:
    """klaviyo/klaviyo-api-node #95: Klaviyo answers 400 "'phone_number' must not be empty
    when the sms channel is included in 'subscriptions'"."""
    list_id = api.create_list("Sms", "single_opt_in")
    resp = api.call("POST", "/api/profile-subscription-bulk-create-jobs",
                    _subscribe_body(list_id, [_person("nophone@example.com", sms=True)]))
    assert resp.status_code == 400
    error = checked(resp, "bulk_subscribe_profiles")["errors"][0]
    assert error["source"]["pointer"] == f"{PROFILES}/0/attributes/phone_number"
    assert "must not be empty when the sms channel" in error["detail"]


def test_sms_consent_is_stored_with_the_phone_and_not_for_another_profiles_phone(
        api: SandboxClient) -> None:
    """spec ``ProfileSubscriptionCreateQueryResourceObject.phone_number``: "The phone number
    relating to the SMS subscription"; a phone that belongs to another profile is the 409
    ``duplicate_profile`` of klaviyo-api-node #74/#75. In a subscribe job (no GET) the outcome
    is unverified: the sandbox keeps the email part and records no SMS consent for either."""
    list_id = api.create_list("Sms2", "single_opt_in")
    api.wait_subscribe(api.subscribe(list_id, [], profiles=[
        _person("owner@example.com", phone="+15005550001", sms=True)]))
    job = api.wait_subscribe(api.subscribe(list_id, [], profiles=[
        _person("taker@example.com", phone="+15005550001", sms=True),
        _person("fresh@example.com", phone="+15005550002", sms=True)]))
    assert sorted(api.list_emails(list_id)) == ["fresh@example.com", "owner@example.com",
                                                "taker@example.com"]
    sms = {e: profile_of(api, e)["attributes"] for e in
           ("owner@example.com", "taker@example.com", "fresh@example.com")}
    assert {e: (a["phone_number"], a["subscriptions"]["sms"]["marketing"]["consent"])
            for e, a in sms.items()} == {
        "owner@example.com": ("+15005550001", "SUBSCRIBED"),
        "taker@example.com": (None, "NEVER_SUBSCRIBED"),
        "fresh@example.com": ("+15005550002", "SUBSCRIBED")}
    assert [(f["index"], f["code"]) for f in job["failures"]] == [(0, "duplicate_profile")]


def test_flow_triggers_name_the_flows_adding_people_to_a_list_starts(
        api: SandboxClient, server: SandboxServer) -> None:
    """Source: spec ``get_flows_triggered_by_list`` ("Get all flows where the given list ID is
    being used as the trigger", ``GetFlowResponseCollection``, 3/s and 60/m); klaviyo-behaviour.md
    (adding people to a list triggers its flows). A new list triggers none; the answer is
    validated against the spec."""
    list_id = api.create_list("Flows")
    path = f"/api/lists/{list_id}/flow-triggers"
    assert checked(api.call("GET", path), "get_flows_triggered_by_list")["data"] == []
    made = requests.post(f"{server.url}/_sandbox/lists/{list_id}/flows",
                         json={"name": "Welcome"}, timeout=5).json()
    data = checked(api.call("GET", path), "get_flows_triggered_by_list")["data"]
    assert [(f["id"], f["attributes"]["name"], f["attributes"]["trigger_type"]) for f in data] \
        == [(made["id"], "Welcome", "Added to List")]
    assert api.call("GET", "/api/lists/XXXXXX/flow-triggers").status_code == 404
    op = BY_NAME["get_flows_triggered_by_list"]
    assert (op.burst, op.steady) == (3, 60)
