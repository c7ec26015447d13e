"""A bulk import's 409 ``duplicate_profile`` against real Redis (Klaviyo mocked at HTTP): the
user is handed back to be sent without the taken identifier, counted once, and dead-lettered
only when nothing is left to leave out."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
import responses

from core.keys import JobKeys
from tests.unit.klaviyo_fakes import BASE
from worker.engine import imports
from worker.klaviyo.client import KlaviyoClient
from worker.state import codes
from worker.state.conflicts import ConflictStore
from worker.state.counters import JobCounters
from worker.state.deadletter import DeadLetterStore
from worker.state.desired import DesiredState, Mark

JOBS = f"{BASE}/api/profile-bulk-import-jobs"
EMAIL = "taker@example.com"
ATTRS = {"phone_number": "+15005550001", "external_id": "x-1", "first_name": "Tia"}


@pytest.fixture
def state(redis_url: str) -> DesiredState:
    return DesiredState(redis.Redis.from_url(redis_url), JobKeys("t", "vip"))


def finished_with_409(rsps: responses.RequestsMock, kjob: str, pointer: str) -> None:
    """Klaviyo's answers: the job complete with one failure, a 409 without original_payload."""
    rsps.get(f"{JOBS}/{kjob}", json={"data": {
        "type": "profile-bulk-import-job", "id": kjob, "attributes": {
            "status": "complete", "total_count": 2, "completed_count": 1, "failed_count": 1}}})
    error: dict[str, Any] = {"code": "duplicate_profile", "title": "Conflict.",
                             "detail": "A profile already exists with one of these identifiers.",
                             "source": {"pointer": pointer}}
    rsps.get(f"{JOBS}/{kjob}/import-errors", json={
        "data": [{"type": "import-error", "id": "E1", "attributes": error}],
        "links": {"self": f"{JOBS}/{kjob}/import-errors"}})


def force_add(state: DesiredState, kjob: str) -> str:
    """A force-add import of the users due (the taker, and Ann the first time); returns the
    pointer of the taker's 409 (by index: Klaviyo's import errors need not carry a payload),
    naming no identifier."""
    now = int(time.time() * 1000)
    state.record([Mark("ann@example.com", "vip", codes.ENTER, 1, {"first_name": "Ann"}),
                  Mark(EMAIL, "vip", codes.ENTER, 1, ATTRS)], now)
    claimed, _ = state.claim(now, 60_000, 10)
    users = sorted(claimed, key=lambda u: u.email)
    imports.register(state, kjob, users, hold=True)
    index = [u.email for u in users].index(EMAIL)
    return f"/data/attributes/profiles/data/{index}/attributes"


def test_a_409_is_sent_again_without_one_identifier_at_a_time(
        state: DesiredState, client: KlaviyoClient, rsps: responses.RequestsMock) -> None:
    letters = DeadLetterStore(state.redis, "t", "vip")
    counters = JobCounters(state.redis, "t", "vip")
    for round_, kjob in enumerate(("K1", "K2")):
        finished_with_409(rsps, kjob, force_add(state, kjob))
        assert imports.poll(state, client, letters, kjob, 60).refused == 0
        assert state.redis.zscore(state.keys.pending, EMAIL) is not None  # to be sent again
        known = ConflictStore(state.redis, state.keys).read([EMAIL])[EMAIL]
        assert known == dict(list({"phone_number": "+15005550001",
                                   "external_id": "x-1"}.items())[: round_ + 1])
    assert counters.snapshot().dropped == {"external_id_conflict": 1, "phone_number_conflict": 1}
    assert letters.size() == 0
    assert state.read(["ann@example.com"])[0].applied_in  # the other user is in
    # both left out already: nothing else can be tried
    finished_with_409(rsps, "K3", force_add(state, "K3"))
    assert imports.poll(state, client, letters, "K3", 60).refused == 1
    assert [letter.email for letter in letters.list()] == [EMAIL]
