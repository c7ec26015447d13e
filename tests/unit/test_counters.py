"""Per-job counters: one Redis hash, atomic increments, a masked last error."""

from __future__ import annotations

from datetime import datetime
from threading import Thread

import pytest
import redis

from worker.counters import (
    ADDED,
    DEAD_LETTERED,
    FAILED,
    REMOVED,
    CounterSnapshot,
    JobCounters,
    counters_key,
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
        counters.omitted("no_email")
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
        """Each reason has its own count and the total sums them."""
        # when
        counters.omitted("no_email", 3)
        counters.omitted("invalid_email")
        counters.omitted("no_email")
        # then
        snap = counters.snapshot()
        assert snap.omitted == {"invalid_email": 1, "no_email": 4}
        assert snap.omitted_total == 5

    def test_an_omission_needs_a_reason(self, counters: JobCounters) -> None:
        """An empty reason is refused."""
        with pytest.raises(ValueError, match="reason"):
            counters.omitted("")


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
        counters.omitted("phone_invalid", 2)
        # when
        data = counters.snapshot().as_dict()
        # then
        assert data == {"added": 2, "removed": 0, "failed": 0, "dead_lettered": 0,
                        "omitted": {"phone_invalid": 2}, "drift": {}, "clamped": {},
                        "last_error": None,
                        "last_error_at": None, "omitted_total": 2}

    def test_a_client_without_decoding_reads_the_same(self, redis_url: str) -> None:
        """Counters read the same through a client that returns bytes."""
        # given
        raw_client = redis.Redis.from_url(redis_url)
        JobCounters(raw_client, "test", "vip").omitted("no_email")
        # when
        snap = JobCounters(raw_client, "test", "vip").snapshot()
        # then
        assert snap.omitted == {"no_email": 1}
