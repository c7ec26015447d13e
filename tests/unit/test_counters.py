"""Per-job counters: one Redis hash, atomic increments, a masked last error."""

from __future__ import annotations

from datetime import datetime
from threading import Thread

import pytest
import redis

from worker.state.counters import (
    ADDED,
    DEAD_LETTERED,
    FAILED,
    REMOVED,
    CounterSnapshot,
    JobCounters,
    counters_key,
    person_digest,
)


@pytest.fixture
def counters(redis_client: redis.Redis) -> JobCounters:
    return JobCounters(redis_client, "test", "vip")


class TestCounting:
    def test_a_new_job_reads_all_zero(self, counters: JobCounters) -> None:
        """Before anything happens every counter is zero and there is no last error."""
        assert counters.snapshot() == CounterSnapshot()

    def test_add_sums_named_counters(self, counters: JobCounters) -> None:
        """Repeated adds accumulate per counter."""
        # when
        counters.add(added=3, failed=1)
        counters.add(added=2, removed=4, dead_lettered=1)
        # then
        snap = counters.snapshot()
        assert (snap.added, snap.removed, snap.failed, snap.dead_lettered) == (5, 4, 1, 1)

    def test_counters_live_in_the_documented_hash(
        self, counters: JobCounters, redis_client: redis.Redis
    ) -> None:
        """Other modules find the counts at {prefix}:job:{job}:counters under the named fields."""
        # when
        counters.add(added=1, removed=2, failed=3, dead_lettered=4)
        counters.omitted({"no_email": {"p1"}})
        # then
        assert redis_client.hgetall(counters_key("test", "vip")) == {
            ADDED: "1", REMOVED: "2", FAILED: "3", DEAD_LETTERED: "4", "omitted:no_email": "1"}

    def test_an_unknown_counter_is_refused(self, counters: JobCounters) -> None:
        """A misspelt counter name fails loudly instead of counting somewhere unread."""
        with pytest.raises(ValueError, match="addded"):
            counters.add(addded=1)

    def test_concurrent_adds_lose_nothing(self, redis_url: str) -> None:
        """Eight threads adding 100 times each leave exactly 800."""
        # given
        def work() -> None:
            mine = JobCounters(redis.Redis.from_url(redis_url), "test", "vip")
            for _ in range(100):
                mine.add(added=1)

        threads = [Thread(target=work) for _ in range(8)]
        # when
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        # then
        assert JobCounters(redis.Redis.from_url(redis_url), "test", "vip").snapshot().added == 800


class TestOmissions:
    def test_omissions_are_counted_per_reason(self, counters: JobCounters) -> None:
        """Each reason has its own count of people and the total sums them."""
        # when
        counters.omitted({"no_email": {"p1", "p2", "p3"}, "invalid_email": {"p4"}})
        counters.omitted({"no_email": {"p5"}})
        # then
        snap = counters.snapshot()
        assert snap.omitted == {"invalid_email": 1, "no_email": 4}
        assert snap.omitted_total == 5

    def test_a_person_omitted_again_is_not_counted_again(self, counters: JobCounters) -> None:
        """The same body sent fifty times counts its people once: counters count people."""
        people = {"no_email": {person_digest(f"uid:u{i}") for i in range(20)}}
        for _ in range(50):
            counters.omitted(people)
        assert counters.snapshot().omitted == {"no_email": 20}

    def test_an_omission_needs_a_reason(self, counters: JobCounters) -> None:
        """An empty reason is refused."""
        with pytest.raises(ValueError, match="reason"):
            counters.omitted({"": {"p1"}})


class TestPeople:
    def test_dropped_fields_count_people_and_are_read_back(self, counters: JobCounters) -> None:
        """A person whose phone is refused twice is one person with a field left out."""
        counters.dropped({"phone_invalid": {"p1", "p2"}})
        counters.dropped({"phone_invalid": {"p1"}})
        assert counters.snapshot().dropped == {"phone_invalid": 2}

    def test_forgotten_people_can_be_counted_again(self, counters: JobCounters) -> None:
        """A replayed dead letter leaves ``failed``; failing again counts the person again."""
        counters.count_people({FAILED: {"p1", "p2"}})
        counters.forget_people({FAILED: {"p1"}})
        assert counters.snapshot().failed == 1
        counters.count_people({FAILED: {"p1"}})
        assert counters.snapshot().failed == 2

    def test_the_sets_hold_digests_never_addresses(self, counters: JobCounters,
                                                   redis_client: redis.Redis) -> None:
        """What is kept to count a person once tells nothing of who they are."""
        counters.omitted({"invalid_email": {person_digest("email:ann@example")}})
        stored = redis_client.smembers("test:job:vip:people:omitted:invalid_email")
        assert len(stored) == 1
        assert "ann" not in next(iter(stored))


class TestLastError:
    def test_the_last_error_is_stored_masked_with_its_time(self, counters: JobCounters) -> None:
        """Emails in the message are masked, and the time of the error is kept."""
        # when
        counters.set_last_error("first")
        counters.set_last_error("Klaviyo refused ann@example.com: invalid phone")
        # then
        snap = counters.snapshot()
        assert snap.last_error == "Klaviyo refused a***@example.com: invalid phone"
        assert snap.last_error_at is not None
        assert datetime.fromisoformat(snap.last_error_at).tzinfo is not None

    def test_a_huge_message_is_capped(self, counters: JobCounters) -> None:
        """A runaway error body is cut to a bounded length."""
        counters.set_last_error("x" * 100_000)
        assert len(counters.snapshot().last_error or "") == 1000


class TestSnapshot:
    def test_as_dict_is_json_ready_and_has_the_total(self, counters: JobCounters) -> None:
        """as_dict lists every counter, the omissions and their total."""
        # given
        counters.add(added=2)
        counters.omitted({"no_email": {"p1", "p2"}})
        counters.dropped({"phone_invalid": {"p3"}})
        # when
        data = counters.snapshot().as_dict()
        # then
        assert data == {"added": 2, "removed": 0, "awaiting_confirmation": 0, "failed": 0,
                        "dead_lettered": 0,
                        "omitted": {"no_email": 2}, "dropped": {"phone_invalid": 1},
                        "drift": {}, "clamped": {}, "last_error": None, "last_error_at": None,
                        "omitted_total": 2}

    def test_a_client_without_decoding_reads_the_same(self, redis_url: str) -> None:
        """Counters read the same through a client that returns bytes."""
        # given
        raw_client = redis.Redis.from_url(redis_url)
        JobCounters(raw_client, "test", "vip").omitted({"no_email": {"p1"}})
        # when
        snap = JobCounters(raw_client, "test", "vip").snapshot()
        # then
        assert snap.omitted == {"no_email": 1}
