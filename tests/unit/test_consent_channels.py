"""Consent channels, historical load and the subscribe payload, without I/O: what the jobs
file accepts, what a Lytics profile becomes, and what each subscribe job says."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from console.commands.jobs import mode
from contract import operations as ops
from contract.spec import validate_request
from core.events import Action, AudienceEvent
from core.jobs import ExportJob, JobsFileError, parse_jobs
from tests.harness import jobs_toml
from worker.engine.consent import NO_CHANNEL, PHONE_TAKEN, subscribe_parts
from worker.engine.imports import _by_pointer, _conflicting
from worker.engine.normalize import CONSENT_KEY, map_profile, parse_time
from worker.engine.plan import has_profile_fields, profile_attributes
from worker.engine.record import mark_events
from worker.klaviyo.bulk_import import ImportFailure
from worker.klaviyo.subscriptions import SubscribeProfile, subscribe_body
from worker.state.conflicts import strip
from worker.state.desired import Desired

VIP = {"id": "vip", "audiences": ["vip"], "new_list_name": "VIP"}
NOW = datetime(2026, 6, 1, tzinfo=UTC)
HISTORY = {"historical_import": True, "email_consent_field": "email_at",
           "without_consent_date": "omit"}
BOTH = {"channels": ["email", "sms"], "phone_field": "mobile"}


def job(**fields: object) -> ExportJob:
    return parse_jobs(jobs_toml([{**VIP, **fields}])).get("vip")


def refused(**fields: object) -> str:
    with pytest.raises(JobsFileError) as caught:
        job(**fields)
    return str(caught.value)


class TestJobsFile:
    def test_the_default_subscribes_email_alone_without_history(self) -> None:
        plain = job()
        assert (plain.channels, plain.historical_import, plain.phone_field) == (
            ("email",), False, None)

    @pytest.mark.parametrize(("fields", "message"), [
        ({"channels": ["sms"]}, 'channels includes "sms": name the Lytics field holding the '
                                "phone (phone_field)"),
        ({"channels": []}, "name at least one channel"),
        ({"channels": ["fax"]}, "Input should be 'email' or 'sms', not 'fax'"),
        ({"historical_import": True, "without_consent_date": "omit"},
         "historical_import needs the consent date of every channel: set email_consent_field"),
        ({**HISTORY, **BOTH}, "set sms_consent_field"),
        ({"historical_import": True, "email_consent_field": "email_at"},
         'without_consent_date = "subscribe" (a normal subscribe: a confirmation email on a '
         'double opt-in list) or "omit"'),
        ({"email_consent_field": "email_at"}, "only read with historical_import = true"),
        ({"without_consent_date": "omit"}, "applies only with historical_import = true"),
        ({"sms_consent_field": "sms_at"}, 'channels does not include "sms"'),
        ({"force_add": True, **BOTH}, "force_add adds to the list without changing consent"),
        ({**BOTH, "field_map": {"cell": "phone_number"}},
         "phone_field and field_map both set phone_number"),
    ])
    def test_fields_that_do_not_fit_are_one_readable_line(
            self, fields: dict[str, Any], message: str) -> None:
        error = refused(**fields)
        assert error.startswith("job 'vip': ")
        assert message in error

    def test_jobs_list_shows_the_channels_and_a_historical_import(self) -> None:
        assert mode(job()) == "subscribe"
        assert mode(job(**BOTH, **HISTORY, sms_consent_field="sms_at")) == (
            "subscribe (email+sms; historical, no date: omit)")

    def test_the_phone_and_consent_fields_are_read_from_lytics(self) -> None:
        both = job(**BOTH, **HISTORY, sms_consent_field="sms_at")
        assert both.lytics_fields() == ("email", "mobile", "email_at", "sms_at", "_uid")


class TestParseTime:
    @pytest.mark.parametrize(("raw", "expected"), [
        ("2024-03-01T10:00:00Z", datetime(2024, 3, 1, 10, tzinfo=UTC)),
        ("2024-03-01", datetime(2024, 3, 1, tzinfo=UTC)),
        (1_709_287_200, datetime(2024, 3, 1, 10, tzinfo=UTC)),
        (1_709_287_200_000, datetime(2024, 3, 1, 10, tzinfo=UTC)),
        ("1709287200000", datetime(2024, 3, 1, 10, tzinfo=UTC)),
    ])
    def test_lytics_dates_iso_or_epoch(self, raw: object, expected: datetime) -> None:
        assert parse_time(raw) == expected

    @pytest.mark.parametrize("raw", [None, "", "yesterday", True, float("nan"), [], 10**20])
    def test_anything_else_is_no_date(self, raw: object) -> None:
        assert parse_time(raw) is None


class TestMapProfile:
    def test_a_past_consent_date_travels_with_the_person(self) -> None:
        mapped = map_profile(job(**HISTORY), {"email": "a@x.io", "email_at": "2024-03-01"}, NOW)
        assert mapped.exported
        assert mapped.attributes[CONSENT_KEY] == {"email": "2024-03-01T00:00:00+00:00"}

    @pytest.mark.parametrize("raw", [None, "soon", "2027-01-01T00:00:00Z"])
    def test_no_past_date_and_omit_leaves_the_person_out(self, raw: object) -> None:
        mapped = map_profile(job(**HISTORY), {"email": "a@x.io", "email_at": raw}, NOW)
        assert (mapped.exported, mapped.omitted) == (False, "no_consent_date")

    def test_no_past_date_and_subscribe_is_a_normal_subscribe(self) -> None:
        history = {**HISTORY, "without_consent_date": "subscribe"}
        mapped = map_profile(job(**history), {"email": "a@x.io"}, NOW)
        assert mapped.attributes[CONSENT_KEY] == {"email": ""}

    def test_a_bad_phone_leaves_out_sms_and_still_exports_the_email(self) -> None:
        mapped = map_profile(job(**BOTH), {"email": "a@x.io", "mobile": "555-0100"}, NOW)
        assert mapped.exported
        assert mapped.dropped == ("phone_invalid",)
        assert mapped.attributes == {"email": "a@x.io", CONSENT_KEY: {"email": ""}}

    def test_the_phone_goes_out_in_e164_with_both_channels(self) -> None:
        mapped = map_profile(job(**BOTH), {"email": "a@x.io", "mobile": "+1 (500) 555-0006"},
                             NOW)
        assert mapped.attributes == {"email": "a@x.io", "phone_number": "+15005550006",
                                     CONSENT_KEY: {"email": "", "sms": ""}}

    @pytest.mark.parametrize(("mobile", "reason"), [("555-0100", "phone_invalid"),
                                                    (None, "no_phone"), ("", "no_phone")])
    def test_sms_alone_without_a_valid_phone_omits_the_person(
            self, mobile: object, reason: str) -> None:
        sms = job(channels=["sms"], phone_field="mobile")
        assert map_profile(sms, {"email": "a@x.io", "mobile": mobile}, NOW).omitted == reason

    def test_each_channel_has_its_own_consent_date(self) -> None:
        both = job(**BOTH, **HISTORY, sms_consent_field="sms_at")
        mapped = map_profile(both, {"email": "a@x.io", "mobile": "+15005550006",
                                    "email_at": "2024-01-01", "sms_at": None}, NOW)
        assert mapped.attributes[CONSENT_KEY] == {"email": "2024-01-01T00:00:00+00:00"}
        assert mapped.dropped == ("no_consent_date",)

    def test_the_consent_key_is_never_a_profile_attribute(self) -> None:
        mapped = map_profile(job(**HISTORY), {"email": "a@x.io", "email_at": "2024-03-01"}, NOW)
        user = Desired("a@x.io", True, "1", {k: v for k, v in mapped.attributes.items()
                                             if k != "email"}, None)
        assert profile_attributes(user) == {"email": "a@x.io"}
        assert not has_profile_fields(user)


class TestRecord:
    def test_an_omitted_enter_is_counted_but_an_exit_still_removes(self) -> None:
        history = job(**HISTORY)
        events = [AudienceEvent(audience="vip", action=action, ts_ns=1,
                                profile={"email": "a@x.io"})
                  for action in (Action.ENTER, Action.EXIT)]
        marked = mark_events(history, events, now_ns=2, max_skew_seconds=300)
        assert [m.action for m in marked.marks] == ["X"]
        assert {r: len(p) for r, p in marked.omitted.items()} == {"no_consent_date": 1}


def user(email: str, **attributes: Any) -> Desired:
    return Desired(email, True, "1", attributes, None)


class TestSubscribeParts:
    def test_the_usual_job_is_one_normal_part(self) -> None:
        parts = subscribe_parts(job(), [user("a@x.io")])
        assert [p for _, p in parts.normal] == [SubscribeProfile("a@x.io")]
        assert parts.historical == [] and parts.unsendable == []

    def test_dated_channels_go_historical_and_the_rest_normal(self) -> None:
        both = job(**BOTH, **{**HISTORY, "without_consent_date": "subscribe"},
                   sms_consent_field="sms_at")
        dated = user("a@x.io", phone_number="+15005550006",
                     **{CONSENT_KEY: {"email": "2024-01-01T00:00:00+00:00", "sms": ""}})
        parts = subscribe_parts(both, [dated])
        (_, hist), = parts.historical
        (_, normal), = parts.normal
        assert (hist.email_marketing, hist.sms, hist.consented_at) == (
            True, False, datetime(2024, 1, 1, tzinfo=UTC))
        assert (normal.email_marketing, normal.sms, normal.phone) == (
            False, True, "+15005550006")

    def test_a_phone_known_to_be_anothers_drops_sms_only(self) -> None:
        both = job(**BOTH)
        taken = {"a@x.io": {"phone_number": "+15005550006"}}
        parts = subscribe_parts(both, [user("a@x.io", phone_number="+15005550006",
                                            **{CONSENT_KEY: {"email": "", "sms": ""}})], taken)
        (_, profile), = parts.normal
        assert (profile.email_marketing, profile.sms, profile.phone) == (True, False, None)

    def test_sms_alone_with_a_taken_phone_cannot_be_sent(self) -> None:
        sms = job(channels=["sms"], phone_field="mobile")
        taken = {"a@x.io": {"phone_number": "+15005550006"}}
        parts = subscribe_parts(sms, [user("a@x.io", phone_number="+15005550006",
                                           **{CONSENT_KEY: {"sms": ""}})], taken)
        assert parts.normal == [] and [why for _, why in parts.unsendable] == [PHONE_TAKEN]

    def test_a_historical_job_without_stored_consent_sends_nothing_when_it_omits(self) -> None:
        parts = subscribe_parts(job(**HISTORY), [user("a@x.io")])
        assert [why for _, why in parts.unsendable] == [NO_CHANNEL]


class TestSubscribeBody:
    def test_both_channels_with_their_own_consent_times_are_spec_valid(self) -> None:
        profile = SubscribeProfile("a@x.io", datetime(2024, 1, 1, tzinfo=UTC),
                                   phone="+15005550006", sms=True,
                                   sms_consented_at=datetime(2023, 1, 1, tzinfo=UTC))
        body = subscribe_body("L1", [profile], historical_import=True)
        validate_request(ops.BULK_SUBSCRIBE, body)
        attributes = body["data"]["attributes"]["profiles"]["data"][0]["attributes"]
        assert attributes["phone_number"] == "+15005550006"
        assert attributes["subscriptions"] == {
            "email": {"marketing": {"consent": "SUBSCRIBED",
                                    "consented_at": "2024-01-01T00:00:00+00:00"}},
            "sms": {"marketing": {"consent": "SUBSCRIBED",
                                  "consented_at": "2023-01-01T00:00:00+00:00"}}}

    def test_sms_alone_sends_the_email_only_to_identify(self) -> None:
        body = subscribe_body("L1", [SubscribeProfile("a@x.io", phone="+15005550006", sms=True,
                                                      email_marketing=False)])
        validate_request(ops.BULK_SUBSCRIBE, body)
        attributes = body["data"]["attributes"]["profiles"]["data"][0]["attributes"]
        assert attributes["subscriptions"] == {"sms": {"marketing": {"consent": "SUBSCRIBED"}}}
        assert attributes["email"] == "a@x.io"

    def test_the_phone_is_sent_only_with_sms(self) -> None:
        body = subscribe_body("L1", [SubscribeProfile("a@x.io", phone="+15005550006")])
        assert "phone_number" not in body["data"]["attributes"]["profiles"]["data"][0][
            "attributes"]

    def test_sms_without_a_phone_is_a_value_error(self) -> None:
        with pytest.raises(ValueError, match="SMS consent needs a phone number"):
            subscribe_body("L1", [SubscribeProfile("a@x.io", sms=True)])


class TestConflicts:
    def test_an_import_error_without_payload_is_found_by_its_index(self) -> None:
        emails = ["a@x.io", "b@x.io"]
        assert _by_pointer("/data/attributes/profiles/data/1/attributes/phone_number",
                           emails) == "b@x.io"
        assert _by_pointer("/data/attributes/profiles/data/7", emails) is None
        assert _by_pointer(None, emails) is None

    @pytest.mark.parametrize(("pointer", "code", "expected"), [
        ("/data/attributes/profiles/data/0/attributes/phone_number", "duplicate_profile",
         ("phone_number",)),
        ("/data/attributes/profiles/data/0/attributes", "duplicate_profile",
         ("phone_number", "external_id")),
        ("/data/attributes/profiles/data/0/attributes/email", "invalid", ()),
    ])
    def test_a_409_names_the_identifier_to_leave_out(
            self, pointer: str, code: str, expected: tuple[str, ...]) -> None:
        failure = ImportFailure(code=code, title="", detail="", email=None, pointer=pointer)
        assert _conflicting(failure) == expected

    def test_only_the_refused_value_is_left_out(self) -> None:
        attributes = {"email": "a@x.io", "phone_number": "+15005550006", "first_name": "A"}
        assert strip(attributes, {"phone_number": "+15005550006"}) == {
            "email": "a@x.io", "first_name": "A"}
        assert strip(attributes, {"phone_number": "+15005550009"}) == attributes
