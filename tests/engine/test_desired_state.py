"""The desired-state scripts: the newest event per (user, audience) wins, whatever the order."""

from __future__ import annotations

import random

import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.keys import JobKeys
from worker.state.codes import FORGET
from worker.state.desired import Desired, DesiredState, Mark

EMAILS = [f"u{i}@example.com" for i in range(40)]
AUDIENCES = ["a", "b", "c"]

marks = st.lists(
    st.builds(
        Mark,
        email=st.sampled_from(EMAILS),
        audience=st.sampled_from(AUDIENCES),
        action=st.sampled_from(["E", "X"]),
        ts_ns=st.integers(1_700_000_000_000_000_000, 1_700_000_000_000_000_050),
        attributes=st.none(),
    ),
    min_size=1,
    max_size=300,
)


def expected_members(history: list[Mark]) -> set[str]:
    """The model: per (user, audience) the newest event wins; on a tie, exit wins."""
    latest: dict[tuple[str, str], tuple[int, int]] = {}
    for m in history:
        rank = (m.ts_ns, 1 if m.action == "X" else 0)
        key = (m.email, m.audience)
        if key not in latest or rank > latest[key]:
            latest[key] = rank
    return {email for (email, _), (_, is_exit) in latest.items() if not is_exit}


def shuffled_batches(history: list[Mark], rng: random.Random) -> list[list[Mark]]:
    """The history with a third of it again, shuffled, in batches of 17."""
    delivered = history + rng.sample(history, k=len(history) // 3)
    rng.shuffle(delivered)
    return [delivered[start : start + 17] for start in range(0, len(delivered), 17)]


def fresh_state(redis_url: str) -> DesiredState:
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    return DesiredState(client, JobKeys("p", "job"))


def emails(users: list[Desired]) -> set[str]:
    return {u.email for u in users}


def members(state: DesiredState) -> set[str]:
    users = state.read(EMAILS)
    return {u.email for u in users if u.member}


class TestRecord:
    @settings(
        max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(history=marks, seed=st.integers(0, 2**32 - 1))
    def test_any_order_and_duplicates_give_the_same_members(
        self, redis_url: str, history: list[Mark], seed: int
    ) -> None:
        """Shuffled, duplicated and late events end in the membership the newest events say."""
        # given a history delivered shuffled with duplicates, in batches
        state = fresh_state(redis_url)
        # when
        for batch in shuffled_batches(history, random.Random(seed)):
            state.record(batch, now_ms=1)
        # then
        assert members(state) == expected_members(history)

    def test_a_stale_event_changes_nothing(self, redis_client: redis.Redis) -> None:
        """An enter older than the recorded exit neither re-adds the user nor marks them pending."""
        state = DesiredState(redis_client, JobKeys("p", "job"))
        state.record([Mark("a@x.io", "a", "X", 20, None)], now_ms=1)
        redis_client.delete(state.keys.pending)
        assert state.record([Mark("a@x.io", "a", "E", 10, None)], now_ms=2) == 0
        assert not state.read(["a@x.io"])[0].member
        assert state.pending_count() == 0

    def test_change_updates_fields_of_members_only(self, redis_client: redis.Redis) -> None:
        """A change event sets fields for a current member and is ignored for anyone else."""
        state = DesiredState(redis_client, JobKeys("p", "job"))
        state.record(
            [
                Mark("in@x.io", "a", "E", 1, {"first_name": "Old"}),
                Mark("in@x.io", "a", "C", 2, {"first_name": "New"}),
                Mark("out@x.io", "a", "C", 2, {"first_name": "Nobody"}),
            ],
            now_ms=1,
        )
        inside, outside = state.read(["in@x.io", "out@x.io"])
        assert inside.attributes == {"first_name": "New"}
        assert outside.attributes == {}


class TestClaim:
    def test_a_user_held_by_one_flusher_is_not_claimed_by_another(
        self, redis_client: redis.Redis
    ) -> None:
        """Two claims never hand out the same user while its lease is live."""
        state = DesiredState(redis_client, JobKeys("p", "job"))
        state.record([Mark(e, "a", "E", 1, None) for e in EMAILS[:10]], now_ms=1)
        first, _ = state.claim(now_ms=1000, lease_ms=5000, max_n=6)
        state.record([Mark(EMAILS[0], "a", "X", 2, None)], now_ms=1001)  # pending again while held
        second, blocked = state.claim(now_ms=1002, lease_ms=5000, max_n=10)
        assert len(first) == 6 and not emails(first) & emails(second)
        assert EMAILS[0] not in emails(second) and blocked == 6000

    def test_an_expired_lease_returns_the_user_to_pending(self, redis_client: redis.Redis) -> None:
        """A worker that died mid-flush loses nobody: after the lease, its users are claimable."""
        state = DesiredState(redis_client, JobKeys("p", "job"))
        state.record([Mark("a@x.io", "a", "E", 1, None)], now_ms=1)
        claimed, _ = state.claim(now_ms=1000, lease_ms=500, max_n=10)
        assert emails(claimed) == {"a@x.io"} and state.pending_count() == 0
        again, _ = state.claim(now_ms=1600, lease_ms=500, max_n=10)
        assert emails(again) == {"a@x.io"} and again[0].member

    def test_release_counts_each_transition_once(self, redis_client: redis.Redis) -> None:
        """Releasing the same outcome twice (a redelivered flush) counts one addition."""
        state = DesiredState(redis_client, JobKeys("p", "job"))
        state.record([Mark("a@x.io", "a", "E", 1, None)], now_ms=1)
        state.claim(now_ms=10, lease_ms=500, max_n=10)
        state.release([("a@x.io", "in|")], now_ms=11)
        state.release([("a@x.io", "in|")], now_ms=12)
        state.release([("a@x.io", FORGET)], now_ms=13)
        assert redis_client.hget("p:job:job:counters", "added") == "1"


class TestRecordAndClaim:
    """A backfill chunk records its events and claims its own users in one step."""

    def test_new_users_go_straight_to_a_lease(self, redis_client: redis.Redis) -> None:
        """Changed users come back claimed with their state; nobody is left pending."""
        state = DesiredState(redis_client, JobKeys("p", "job"))
        chunk = [Mark(e, "a", "E", 1, {"first_name": "Ann"}) for e in EMAILS[:5]]
        changed, claimed = state.record_and_claim(chunk, now_ms=1000, lease_ms=500)
        assert changed == 5 and emails(claimed) == set(EMAILS[:5])
        assert all(u.member and u.attributes == {"first_name": "Ann"} for u in claimed)
        assert state.pending_count() == 0 and state.inflight_count() == 5

    def test_a_held_or_settling_user_stays_pending(self, redis_client: redis.Redis) -> None:
        """A user another flusher holds, or whose subscribe settles, is recorded, not claimed."""
        state = DesiredState(redis_client, JobKeys("p", "job"))
        state.record([Mark("held@x.io", "a", "E", 1, None)], now_ms=1)
        state.claim(now_ms=10, lease_ms=5000, max_n=10)  # another flusher holds it
        redis_client.zadd(state.keys.settling, {"settling@x.io": 9000})
        chunk = [Mark("held@x.io", "a", "X", 2, None), Mark("settling@x.io", "a", "E", 2, None)]
        changed, claimed = state.record_and_claim(chunk, now_ms=20, lease_ms=500)
        assert changed == 2 and claimed == []
        assert state.pending_count() == 2
        assert not state.read(["held@x.io"])[0].member

    def test_a_redelivered_chunk_claims_only_users_still_pending(
        self, redis_client: redis.Redis
    ) -> None:
        """Recorded again, a chunk changes nothing, and claims just the users handed back."""
        state = DesiredState(redis_client, JobKeys("p", "job"))
        chunk = [Mark(e, "a", "E", 1, None) for e in EMAILS[:3]]
        state.record_and_claim(chunk, now_ms=10, lease_ms=500)
        state.release([(EMAILS[0], "in|"), (EMAILS[1], "in|"), (EMAILS[2], "retry")], now_ms=11)
        changed, again = state.record_and_claim(chunk, now_ms=12, lease_ms=500)
        assert changed == 0 and emails(again) == {EMAILS[2]}

    def test_users_of_a_dead_flusher_are_claimed_again(self, redis_client: redis.Redis) -> None:
        """A chunk redelivered after its worker died takes back its users once the lease ends."""
        state = DesiredState(redis_client, JobKeys("p", "job"))
        chunk = [Mark(e, "a", "E", 1, None) for e in EMAILS[:3]]
        state.record_and_claim(chunk, now_ms=10, lease_ms=500)  # the worker dies holding them
        _, too_soon = state.record_and_claim(chunk, now_ms=400, lease_ms=500)
        _, after = state.record_and_claim(chunk, now_ms=600, lease_ms=500)
        assert too_soon == [] and emails(after) == set(EMAILS[:3])
        assert all(u.member and u.applied is None for u in after)

    @settings(
        max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(history=marks, seed=st.integers(0, 2**32 - 1))
    def test_membership_is_the_same_as_record(
        self, redis_url: str, history: list[Mark], seed: int
    ) -> None:
        """Batches recorded with or without the claim end in the same members."""
        state = fresh_state(redis_url)
        rng = random.Random(seed)
        for batch in shuffled_batches(history, rng):
            if rng.random() < 0.5:
                state.record(batch, now_ms=1)
            else:
                state.record_and_claim(batch, now_ms=1, lease_ms=1)
        assert members(state) == expected_members(history)
