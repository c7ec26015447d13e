"""Specs for ``producers.lytics``: every Lytics shape becomes the right AudienceEvents."""

from __future__ import annotations

import time

import pytest
from lytics_samples import (
    META_TS,
    META_TS_NS,
    TS,
    TS_NS,
    VIP_ID,
    VIP_SLUG,
    batch,
    body,
    cloud_event,
    segment_event,
)

from core.events import Action, AudienceEvent
from core.jobs import ExportJob
from producers.lytics import MAX_BODIES, PayloadError, parse_body, parse_json, parse_timestamp

RECEIVED_NS = 1_800_000_000_000_000_000  # the receiver's clock in these specs


class TestTimestamps:
    @pytest.mark.parametrize(("text", "expected"), [
        ("2023-05-25T23:09:59.872199615Z", 1_685_056_199_872_199_615),
        ("2023-05-25T16:09:59.872199615-07:00", 1_685_056_199_872_199_615),
        ("2023-05-26T04:39:59.872199615+05:30", 1_685_056_199_872_199_615),
        ("2023-05-25T23:09:59Z", 1_685_056_199_000_000_000),
        ("2023-05-25T23:09:59.5Z", 1_685_056_199_500_000_000),
        ("2023-05-25t23:09:59.000000001z", 1_685_056_199_000_000_001),
        ("1970-01-01T00:00:00Z", 0),
        ("2024-02-29T00:00:00+00:00", 1_709_164_800_000_000_000),
    ])
    def test_rfc3339_to_nanoseconds(self, text: str, expected: int) -> None:
        """Nanoseconds and offsets are kept exactly: all nine fraction digits count."""
        assert parse_timestamp(text) == expected

    @pytest.mark.parametrize("text", [
        "2023-05-25 23:09:59Z", "2023-05-25T23:09:59", "2023-02-30T00:00:00Z",
        "2023-13-01T00:00:00Z", "2023-05-25T24:00:00Z", "2023-05-25T23:60:00Z",
        "2023-05-25T23:09:59+24:00", "1969-12-31T23:59:59Z", "2023-05-25T23:09:59.Z",
        "٢٠٢٣-05-25T23:09:59Z", "", 1685056199, None,
    ])
    def test_rejects_what_is_not_rfc3339(self, text: object) -> None:
        """Anything but a full RFC 3339 date-time after 1970 is refused."""
        with pytest.raises(ValueError, match="timestamp"):
            parse_timestamp(text)


class TestReceiveTime:
    def test_every_event_carries_the_receivers_clock(self, job: ExportJob) -> None:
        """The receiver stamps each event with its own clock; the event time stays the source's,
        however far ahead it is: the worker judges it against the receive time."""
        payload = body(segment_event("enter", ts="2099-01-01T00:00:00Z"),
                       segment_event("exit", ts="9999-12-31T23:59:59.999999999Z"))
        parsed = parse_body(payload, job, received_ns=RECEIVED_NS)
        assert [(e.ts_ns, e.received_ns) for e in parsed.events] == [
            (4_070_908_800_000_000_000, RECEIVED_NS),
            (253_402_300_799_999_999_999, RECEIVED_NS),
        ]
        assert all(e.to_wire()["received_ns"] == RECEIVED_NS for e in parsed.events)

    def test_without_a_given_time_the_clock_is_now(self, job: ExportJob) -> None:
        """The webhook and the enqueue command pass nothing: the receive time is now."""
        before = time.time_ns()
        (event,) = parse_body(body(segment_event("enter")), job).events
        assert event.received_ns is not None
        assert before <= event.received_ns <= time.time_ns()


class TestShapes:
    def test_default_body(self, job: ExportJob) -> None:
        """The documented single body gives one event in the job's name, time and profile fields."""
        # given
        payload = body(segment_event("enter"), first_name="Ann", city="Oslo")
        # when
        parsed = parse_body(payload, job, received_ns=RECEIVED_NS)
        # then
        profile = {"email": "ann@example.com", "first_name": "Ann", "_uid": "a1b2c3"}
        assert parsed.events == [
            AudienceEvent(audience=VIP_SLUG, action=Action.ENTER, ts_ns=TS_NS, profile=profile,
                          received_ns=RECEIVED_NS)]
        assert (parsed.ignored, parsed.bodies) == (0, 1)

    def test_array_of_bodies(self, job: ExportJob) -> None:
        """A batched array gives one event per body, in order."""
        parsed = parse_body(batch(3), job)
        emails = [e.profile["email"] for e in parsed.events]
        assert emails == [f"user{i}@example.com" for i in range(3)]
        assert parsed.bodies == 3

    def test_cloudevents_envelope(self, job: ExportJob) -> None:
        """A CloudEvents body is read like the default one, with ``time`` as the fallback."""
        parsed = parse_body(cloud_event(segment_event("exit", ts=None)), job,
                            received_ns=RECEIVED_NS)
        assert parsed.events == [AudienceEvent(audience=VIP_SLUG, action=Action.EXIT,
                                               ts_ns=META_TS_NS,
                                               profile={"email": "ann@example.com"},
                                               received_ns=RECEIVED_NS)]

    def test_mixed_array(self, job: ExportJob) -> None:
        """An array may mix default bodies and CloudEvents."""
        parsed = parse_body([body(), cloud_event(segment_event("exit"))], job)
        assert [e.action for e in parsed.events] == [Action.ENTER, Action.EXIT]

    def test_several_segment_events_each_with_its_own_time(self, job: ExportJob) -> None:
        """Every segment_events entry is one event, timed by its own key or meta.timestamp."""
        payload = body(segment_event("enter", ts="2023-05-25T23:00:00.000000001Z"),
                       segment_event("exit", segment_id="x", slug="churn_risk",
                                     ts="2023-05-25T16:00:00.000000002-07:00"),
                       segment_event("change", ts=None))
        parsed = parse_body(payload, job)
        assert [(e.audience, e.action, e.ts_ns) for e in parsed.events] == [
            (VIP_SLUG, Action.ENTER, 1_685_055_600_000_000_001),
            ("churn_risk", Action.EXIT, 1_685_055_600_000_000_002),
            (VIP_SLUG, Action.CHANGE, META_TS_NS),
        ]

    def test_empty_array_is_nothing_to_do(self, job: ExportJob) -> None:
        """An empty batch parses to no events."""
        assert parse_body([], job).events == []

    def test_profile_holds_only_the_fields_the_job_reads(self, job: ExportJob) -> None:
        """Fields the job does not map stay out of the event; missing ones are simply absent.
        Lytics' ``_uid`` stays in: it tells apart people without a usable email."""
        parsed = parse_body(body(email="bob@example.com", score_x=3), job)
        assert parsed.events[0].profile == {"email": "bob@example.com", "_uid": "a1b2c3"}


class TestAudiences:
    def test_unselected_audiences_are_counted_not_queued(self, job: ExportJob) -> None:
        """Events for audiences the job does not export are ignored and counted."""
        payload = [body(segment_event(segment_id="1", slug="other")), body()]
        parsed = parse_body(payload, job)
        assert (len(parsed.events), parsed.ignored) == (1, 1)

    def test_id_is_matched_before_slug(self) -> None:
        """When the job lists both the id and the slug, the id is the name used."""
        job = ExportJob(id="j", audiences=(VIP_SLUG, VIP_ID))
        assert parse_body(body(), job).events[0].audience == VIP_ID

    def test_slug_is_matched_when_the_id_is_not_selected(self) -> None:
        """A job that names the audience by slug gets the slug, whatever id Lytics sends."""
        job = ExportJob(id="j", audiences=(VIP_SLUG,))
        assert parse_body(body(segment_event(segment_id="f00")), job).events[0].audience == VIP_SLUG

    def test_event_with_only_an_id(self) -> None:
        """An entry without a slug is matched by id alone."""
        job = ExportJob(id="j", audiences=(VIP_ID,))
        assert parse_body(body(segment_event(slug=None)), job).events[0].audience == VIP_ID


class TestRefusals:
    @pytest.mark.parametrize(("payload", "message"), [
        ("text", "body: expected an object or an array of objects, got string"),
        ([1], "body[0]: expected an object, got number"),
        ({"id": "1"}, "body.data: missing"),
        ({"data": []}, "body.data: expected an object, got array"),
        ({"data": {"email": "a@b.c"}}, "body.data.segment_events: missing (add segment_events"),
        (body(segment_event("shout")), "body.data.segment_events[0].event: unknown event 'shout'"),
        (body({"id": VIP_ID, "enter": TS}), "body.data.segment_events[0].event: missing"),
        (body(segment_event(ts="yesterday")),
         "body.data.segment_events[0].enter: not an RFC 3339 timestamp"),
        (body(segment_event(ts=None), meta_ts=None), "body.data.segment_events[0]: no timestamp"),
        (body(segment_event(segment_id=None, slug=None)), "names no audience"),
        (body(segment_event(segment_id=7)), "body.data.segment_events[0].id: expected a non-empty"),
        (body(meta_ts="soon"), "body.meta.timestamp: not an RFC 3339 timestamp"),
        ({**cloud_event(), "specversion": 1}, "body.specversion: expected a string"),
        (cloud_event(time="noon"), "body.time: not an RFC 3339 timestamp"),
        (body(first_name=[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["deep"]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]),
         "body.data.first_name: nested deeper than 32 levels"),
    ])
    def test_precise_messages(self, job: ExportJob, payload: object, message: str) -> None:
        """A body that is no Lytics shape is refused with a message naming the place."""
        with pytest.raises(PayloadError) as caught:
            parse_body(payload, job)
        assert caught.value.message.startswith(message) or message in caught.value.message

    def test_one_bad_body_in_a_batch_refuses_the_whole_batch(self, job: ExportJob) -> None:
        """All or nothing: the fourth body's bad time names ``body[3]``."""
        payload = batch(5)
        payload[3]["data"]["segment_events"][0]["enter"] = "2023-05-25"
        with pytest.raises(PayloadError, match=r"^body\[3\]\.data\.segment_events\[0\]\.enter: "
                                               r"not an RFC 3339 timestamp$"):
            parse_body(payload, job)

    def test_batch_limit(self, job: ExportJob) -> None:
        """Arrays hold at most 1,000 bodies, as Lytics' largest batch."""
        assert parse_body(batch(MAX_BODIES), job).bodies == MAX_BODIES
        with pytest.raises(PayloadError, match="1,001 bodies exceed the limit of 1,000"):
            parse_body(batch(MAX_BODIES + 1), job)

    def test_messages_mask_emails(self, job: ExportJob) -> None:
        """A value echoed in a message never shows a whole email address."""
        with pytest.raises(PayloadError) as caught:
            parse_body(body(segment_event("ann@example.com")), job)
        assert "ann@example.com" not in caught.value.message

    def test_invalid_json(self) -> None:
        """Bytes that are not JSON are a PayloadError, not a crash."""
        with pytest.raises(PayloadError, match=r"^body: not valid JSON"):
            parse_json(b'{"data": ')

    def test_meta_timestamp_is_the_fallback(self, job: ExportJob) -> None:
        """Without the event's own key, meta.timestamp times the event."""
        assert parse_body(body(segment_event(ts=None)), job).events[0].ts_ns == META_TS_NS
        assert META_TS in str(body())
