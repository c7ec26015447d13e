"""The dead-letter store: capped, newest first, counted, masked when shown, replayable."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import redis
from pydantic import ValidationError

from console.commands.dlq import replay
from core.events import Action, AudienceEvent
from core.keys import JobKeys, dlq_key
from worker.state.counters import JobCounters
from worker.state.deadletter import MAX_DETAIL, DeadLetter, DeadLetterStore

EVENT = AudienceEvent(audience="vip", action=Action.ENTER, ts_ns=1_700_000_000_000_000_000,
                      profile={"email": "ann@example.com", "first_name": "Ann"})


def letter(n: int, **changes: object) -> DeadLetter:
    """A dead letter for user ``n``."""
    fields: dict[str, object] = {"email": f"user{n}@example.com", "reason": "invalid_request",
                                 "source": "klaviyo:bulk_subscribe_profiles", **changes}
    return DeadLetter.model_validate(fields)


@pytest.fixture
def store(redis_client: redis.Redis) -> DeadLetterStore:
    return DeadLetterStore(redis_client, "test", "vip", cap=5)


class TestAdding:
    def test_letters_are_listed_newest_first(self, store: DeadLetterStore) -> None:
        """The most recently added letter comes first."""
        # when
        store.add([letter(1), letter(2)])
        store.add([letter(3)])
        # then
        assert [d.email for d in store.list()] == [
            "user3@example.com", "user2@example.com", "user1@example.com"]

    def test_adding_counts_dead_letters_on_the_job(
        self, store: DeadLetterStore, redis_client: redis.Redis
    ) -> None:
        """Every stored letter bumps the job's dead_lettered counter."""
        # when
        store.add([letter(1), letter(2)])
        # then
        assert JobCounters(redis_client, "test", "vip").snapshot().dead_lettered == 2

    def test_failed_counts_the_people_given_up_on_once_each(
        self, store: DeadLetterStore, redis_client: redis.Redis
    ) -> None:
        """Refused twice is one failed person; a replay hands them back to the engine."""
        counters = JobCounters(redis_client, "test", "vip")
        # when
        store.add([letter(1), letter(2)])
        store.add([letter(1, email="USER1@example.com ")])
        # then
        assert counters.snapshot().failed == 2
        # when
        store.take_all()
        # then
        assert counters.snapshot().failed == 0

    def test_the_store_keeps_only_the_newest_cap_letters(self, store: DeadLetterStore) -> None:
        """Past the cap the oldest letters fall off; add returns the size kept."""
        # when
        sizes = [store.add([letter(n)]) for n in range(1, 8)]
        # then
        assert sizes == [1, 2, 3, 4, 5, 5, 5]
        assert store.size() == 5
        assert [d.email for d in store.list()][-1] == "user3@example.com"

    def test_adding_nothing_changes_nothing(
        self, store: DeadLetterStore, redis_client: redis.Redis
    ) -> None:
        """An empty batch stores and counts nothing."""
        assert store.add([]) == 0
        assert redis_client.keys("*") == []

    def test_letters_live_in_the_documented_list(
        self, store: DeadLetterStore, redis_client: redis.Redis
    ) -> None:
        """Letters are JSON entries of {prefix}:job:{job}:dlq."""
        # when
        store.add([letter(1)])
        # then
        (raw,) = redis_client.lrange(dlq_key("test", "vip"), 0, -1)
        assert DeadLetter.model_validate_json(raw).email == "user1@example.com"


class TestReading:
    def test_list_honours_its_limit_and_changes_nothing(self, store: DeadLetterStore) -> None:
        """list(limit) returns at most limit letters and leaves the store as it was."""
        # given
        store.add([letter(n) for n in range(4)])
        # when
        two = store.list(limit=2)
        # then
        assert len(two) == 2
        assert store.size() == 4
        assert store.list(limit=0) == []

    def test_a_letter_survives_the_round_trip_with_its_event(self, store: DeadLetterStore) -> None:
        """The stored event is the exact wire dict, so a replay can rebuild the AudienceEvent."""
        # given
        original = letter(1, event=EVENT.to_wire(), detail="Invalid phone number")
        # when
        store.add([original])
        # then
        (stored,) = store.list()
        assert stored == original
        assert stored.event is not None
        assert AudienceEvent.from_wire(stored.event) == EVENT


class TestTakingAndPurging:
    def test_take_all_empties_the_store_and_returns_oldest_first(
        self, store: DeadLetterStore
    ) -> None:
        """A replay gets every letter in the order they failed, and the store is empty after."""
        # given
        store.add([letter(1), letter(2)])
        store.add([letter(3)])
        # when
        taken = store.take_all()
        # then
        assert [d.email for d in taken] == [
            "user1@example.com", "user2@example.com", "user3@example.com"]
        assert store.size() == 0
        assert store.take_all() == []

    def test_an_unreadable_entry_makes_take_all_keep_everything(
        self, store: DeadLetterStore, redis_client: redis.Redis
    ) -> None:
        """If one entry is not a letter, nothing is taken and the error says so."""
        # given
        store.add([letter(1), letter(2)])
        redis_client.lpush(dlq_key("test", "vip"), "not json")
        # when
        with pytest.raises(ValidationError):
            store.take_all()
        # then
        assert redis_client.lrange(dlq_key("test", "vip"), 0, 0) == ["not json"]
        assert store.size() == 3

    def test_put_back_restores_taken_letters_in_order_without_counting_them(
        self, store: DeadLetterStore, redis_client: redis.Redis
    ) -> None:
        """Letters a replay could not use go back as they were; dead_lettered is not raised."""
        # given
        store.add([letter(1), letter(2)])
        taken = store.take_all()
        # when
        store.put_back(taken)
        # then
        counters = JobCounters(redis_client, "test", "vip").snapshot()
        assert (counters.dead_lettered, counters.failed) == (2, 2)
        assert [d.email for d in store.take_all()] == ["user1@example.com", "user2@example.com"]

    def test_a_letter_whose_event_does_not_parse_survives_a_replay(
        self, store: DeadLetterStore, redis_client: redis.Redis
    ) -> None:
        """Replay never loses a letter: one it cannot re-record stays in the store."""
        # given
        store.add([letter(1, event={"audience": "vip", "action": "teleport"})])
        # when
        replayed = replay(redis_client, store, JobKeys("test", "vip"))
        # then
        assert (replayed, store.size()) == (0, 1)

    def test_purge_deletes_all_and_says_how_many(
        self, store: DeadLetterStore, redis_client: redis.Redis
    ) -> None:
        """Purging returns the number removed and leaves the job's counters alone."""
        # given
        store.add([letter(1), letter(2), letter(3)])
        # when
        purged = store.purge()
        # then
        assert (purged, store.size(), store.purge()) == (3, 0, 0)
        assert JobCounters(redis_client, "test", "vip").snapshot().dead_lettered == 3


class TestPrivacy:
    def test_repr_and_str_never_show_the_email(self) -> None:
        """Printing a letter, or logging it, shows the masked address only."""
        # given
        dead = letter(1, event=EVENT.to_wire())
        # when
        shown = repr(dead) + str(dead)
        # then
        assert "user1@example.com" not in shown
        assert "ann@example.com" not in shown
        assert "u***@example.com" in shown

    def test_masked_is_loggable(self) -> None:
        """masked() hides the address, redacts the detail and leaves the profile out."""
        # given
        dead = letter(1, event=EVENT.to_wire(), detail="duplicate user1@example.com")
        # when
        shown = dead.masked()
        # then
        assert shown["email"] == "u***@example.com"
        assert shown["detail"] == "duplicate u***@example.com"
        assert shown["event"] == {"audience": "vip", "action": "enter",
                                  "ts_ns": 1_700_000_000_000_000_000}

    def test_the_stored_email_is_kept_in_full_for_replay(self) -> None:
        """The model itself keeps the real address."""
        assert letter(1).email == "user1@example.com"


class TestTheLetter:
    def test_a_letter_is_stamped_with_the_current_utc_time(self) -> None:
        """``at`` defaults to now, in UTC."""
        before = datetime.now(UTC)
        assert before <= letter(1).at <= datetime.now(UTC)

    def test_a_huge_detail_is_cut(self) -> None:
        """Error bodies are kept as a bounded excerpt."""
        assert len(letter(1, detail="x" * 50_000).detail) == MAX_DETAIL
