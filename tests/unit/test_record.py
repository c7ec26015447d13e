"""Specs for ``worker.engine.record``: event times too far ahead of the receiver's clock."""

from __future__ import annotations

import time

import redis

from core.events import Action, AudienceEvent
from core.jobs import ExportJob
from core.keys import JobKeys
from worker.engine.record import FUTURE_TS, event_time, mark_events, record_events
from worker.state.counters import JobCounters, person_digest
from worker.state.desired import DesiredState

JOB = ExportJob(id="vip", audiences=("vip",))
SECOND = 1_000_000_000
NOW = 1_800_000_000 * SECOND  # the worker's clock in these specs
Y2099 = 4_070_908_800 * SECOND
Y9999 = 253_402_300_799_999_999_999


def ev(email: str, ts_ns: int, received_ns: int | None = None,
       action: Action = Action.ENTER) -> AudienceEvent:
    return AudienceEvent(audience="vip", action=action, ts_ns=ts_ns,
                         profile={"email": email}, received_ns=received_ns)


class TestEventTime:
    def test_a_time_within_the_skew_stands(self) -> None:
        """A little ahead of the receiver (clocks differ) is the source's time, kept as is."""
        assert event_time(ev("a@x.io", NOW + 299 * SECOND, NOW), NOW, 300 * SECOND) is None

    def test_far_ahead_of_the_receiver_is_its_receive_time(self) -> None:
        """The receiver's clock counts: the event is moved back to when it was received."""
        received = NOW - 60 * SECOND  # queued a minute before the worker reads it
        assert event_time(ev("a@x.io", Y2099, received), NOW, 300 * SECOND) == received

    def test_without_a_receiver_the_worker_clock_counts(self) -> None:
        """An event from a producer that stamps no receive time is judged by the worker."""
        assert event_time(ev("a@x.io", Y9999), NOW, 300 * SECOND) == NOW

    def test_a_receiver_clock_ahead_of_the_worker_is_not_trusted(self) -> None:
        """A receive time itself far in the future cannot carry an event past the worker."""
        assert event_time(ev("a@x.io", Y2099, Y2099), NOW, 300 * SECOND) == NOW


class TestMarkEvents:
    def test_far_future_times_are_clamped_and_the_users_named(self) -> None:
        """2099 and 9999 become the receive time; the rest keep theirs; users counted by reason."""
        events = [ev("a@x.io", Y2099, NOW), ev("b@x.io", Y9999, NOW),
                  ev("a@x.io", Y2099 + 1, NOW, Action.EXIT), ev("c@x.io", NOW - SECOND, NOW)]
        marked = mark_events(JOB, events, now_ns=NOW, max_skew_seconds=300)
        assert [(m.email, m.action, m.ts_ns) for m in marked.marks] == [
            ("a@x.io", "E", NOW), ("b@x.io", "E", NOW), ("a@x.io", "X", NOW),
            ("c@x.io", "E", NOW - SECOND)]
        assert marked.clamped == {
            FUTURE_TS: {person_digest("email:a@x.io"), person_digest("email:b@x.io")}}

    def test_a_skew_of_zero_allows_nothing_ahead(self) -> None:
        marked = mark_events(JOB, [ev("a@x.io", NOW + 1, NOW)], now_ns=NOW, max_skew_seconds=0)
        assert marked.marks[0].ts_ns == NOW


class TestRecordEvents:
    def test_a_later_real_exit_outranks_a_2099_enter(self, redis_client: redis.Redis) -> None:
        """The clamped enter still makes the user a member, and the next real exit wins."""
        keys = JobKeys("p", "vip")
        state = DesiredState(redis_client, keys)
        counters = JobCounters(redis_client, "p", "vip")
        now = time.time_ns()
        record_events(JOB, state, counters, [ev("a@x.io", Y2099, now)])
        assert state.read(["a@x.io"])[0].member
        record_events(JOB, state, counters, [ev("a@x.io", now + SECOND, now + SECOND,
                                                Action.EXIT)])
        assert not state.read(["a@x.io"])[0].member

    def test_clamped_users_are_counted_once_each(self, redis_client: redis.Redis) -> None:
        """Counters count people: the same body re-sent does not count its users again."""
        state = DesiredState(redis_client, JobKeys("p", "vip"))
        counters = JobCounters(redis_client, "p", "vip")
        body = [ev("a@x.io", Y2099), ev("a@x.io", Y9999), ev("b@x.io", Y2099)]
        for _ in range(3):
            record_events(JOB, state, counters, body)
        assert counters.snapshot().clamped == {FUTURE_TS: 2}
