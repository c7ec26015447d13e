"""A lease that lapses while its holder still works (a slow call, a long pause): another
flusher claims the same user, both tell Klaviyo, and the person is still counted once."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis

from core.keys import JobKeys
from worker.engine.plan import applied_in, applied_try, applied_wait
from worker.state import counters
from worker.state.codes import ENTER
from worker.state.desired import Desired, DesiredState, Mark

NOW = 1_800_000_000_000  # ms
KEYS = JobKeys("test", "lapse")


@pytest.mark.parametrize(("accepted", "counter"), [
    (applied_in, counters.ADDED),  # a single opt-in list (or force add)
    (applied_wait, counters.AWAITING),  # a double opt-in list: awaiting confirmation
])
def test_a_second_claimer_does_not_count_a_person_the_first_one_told(
        redis_client: redis.Redis, accepted: Callable[[Desired], str], counter: str) -> None:
    state = DesiredState(redis_client, KEYS)
    state.record([Mark("ann@example.com", "vip", ENTER, NOW * 1_000_000, None)], NOW)
    (first,), _ = state.claim(NOW, lease_ms=10, max_n=10)
    (second,), _ = state.claim(NOW + 20, lease_ms=1000, max_n=10)  # the first lease lapsed
    state.set_applied([(first.email, applied_try(first))])
    state.release([(first.email, accepted(first))], NOW + 30)  # the first one is done
    state.set_applied([(second.email, applied_try(second))])  # the second one sends too
    state.release([(second.email, accepted(second))], NOW + 40)
    assert redis_client.hget(KEYS.counters, counter) == "1"
    assert state.read([first.email])[0].accepted


def test_a_refused_call_restores_what_was_recorded_unless_another_was_told_yes(
        redis_client: redis.Redis) -> None:
    state = DesiredState(redis_client, KEYS)
    state.record([Mark("ann@example.com", "vip", ENTER, NOW * 1_000_000, None)], NOW)
    (user,), _ = state.claim(NOW, lease_ms=1000, max_n=10)
    state.set_applied([(user.email, applied_try(user))])
    state.set_applied([(user.email, user.applied)])  # a 429: nothing was done
    assert state.read([user.email])[0].applied is None
    state.release([(user.email, applied_in(user))], NOW + 30)  # another flusher's yes
    state.set_applied([(user.email, user.applied)])  # this one's 429 arrives late
    assert state.read([user.email])[0].applied_in
