"""The limiter inside the client: every HTTP request is charged as it is sent, each page of
a paginated read included, and a 429 pauses the operation for the fleet."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import pytest
import redis
import responses

from contract import operations as ops
from contract.operations import Operation
from core.keys import rate_limit_key
from tests.unit.klaviyo_fakes import BASE, fake_client
from worker.klaviyo import bulk_import, lists
from worker.klaviyo.client import KlaviyoClient
from worker.klaviyo.errors import KlaviyoError, RateLimited
from worker.limits.gate import Gate, Throttled
from worker.limits.ratelimit import RateLimiter

ERRORS = f"{BASE}/api/profile-bulk-import-jobs/J1/import-errors"


@dataclass
class Counting:
    """A limiter that grants everything and remembers each charge and each 429."""

    charges: list[str] = field(default_factory=list)
    cooled: list[tuple[str, float | None]] = field(default_factory=list)
    observed: list[tuple[str, object, str | None]] = field(default_factory=list)

    def charge(self, account: str, op: Operation) -> object:
        self.charges.append(op.name)
        return len(self.charges)

    def observe(self, account: str, op: Operation, ticket: object,
                headers: Mapping[str, str]) -> None:
        self.observed.append((op.name, ticket, headers.get("RateLimit-Remaining")))

    def rate_limited(self, account: str, op: Operation, retry_after: float | None) -> None:
        self.cooled.append((op.name, retry_after))


def _error(n: int) -> dict[str, object]:
    return {"type": "import-error", "id": f"E{n}", "attributes": {
        "code": "invalid", "title": "Invalid", "detail": "no identifier",
        "source": {"pointer": None}, "original_payload": {"email": f"p{n}@example.com"}}}


def _pages(rsps: responses.RequestsMock, count: int) -> None:
    """``count`` pages of import errors, each linking to the next (registered in order)."""
    for n in range(count):
        nxt = f"{ERRORS}?page%5Bcursor%5D=c{n + 1}" if n + 1 < count else None
        rsps.get(ERRORS, json={"data": [_error(n)], "links": {"self": ERRORS, "next": nxt}})


@pytest.fixture
def counting() -> Counting:
    return Counting()


@pytest.fixture
def limited(counting: Counting) -> KlaviyoClient:
    return fake_client().limited(counting)


def test_each_page_of_a_paginated_read_is_one_charge(
        limited: KlaviyoClient, counting: Counting, rsps: responses.RequestsMock) -> None:
    """Three pages are three requests: three charges, not one for the whole read."""
    _pages(rsps, 3)
    failures = list(bulk_import.iter_import_errors(limited, "J1"))
    assert [f.email for f in failures] == ["p0@example.com", "p1@example.com", "p2@example.com"]
    assert len(rsps.calls) == 3
    assert counting.charges == [ops.GET_BULK_IMPORT_ERRORS.name] * 3


def test_a_single_call_is_one_charge_of_its_own_operation(
        limited: KlaviyoClient, counting: Counting, rsps: responses.RequestsMock) -> None:
    rsps.post(f"{BASE}/api/lists", status=201, json={"data": {
        "type": "list", "id": "L1", "attributes": {"name": "VIP"}}})
    lists.create_list(limited, "VIP")
    assert counting.charges == [ops.CREATE_LIST.name] and len(rsps.calls) == 1


def test_a_429_is_told_to_the_limiter_once_with_its_retry_after(
        limited: KlaviyoClient, counting: Counting, rsps: responses.RequestsMock) -> None:
    rsps.get(f"{BASE}/api/lists/L1", status=429, headers={"Retry-After": "7"})
    with pytest.raises(RateLimited):
        lists.get_list(limited, "L1")
    assert counting.charges == [ops.GET_LIST.name]
    assert counting.cooled == [(ops.GET_LIST.name, 7.0)]


def test_the_unlimited_client_charges_nothing(
        counting: Counting, rsps: responses.RequestsMock) -> None:
    """``limited`` returns a new client: the shared one stays as it was."""
    plain = fake_client()
    plain.limited(counting)
    _pages(rsps, 2)
    assert len(list(bulk_import.iter_import_errors(plain, "J1"))) == 2
    assert counting.charges == []


@pytest.fixture
def slow_limiter(redis_client: redis.Redis) -> Iterator[RateLimiter]:
    """The real limiter with windows 100 times longer: a test never crosses one."""
    yield RateLimiter(redis_client, prefix="lim", headroom=0.9, speed=0.01)


def test_the_real_limiter_stops_a_long_read_at_its_budget(
        slow_limiter: RateLimiter, redis_client: redis.Redis,
        rsps: responses.RequestsMock) -> None:
    """get_errors allows 10 a second (9 at 90 %): a 12-page read sends 9 pages, then is
    throttled before the 10th request leaves, and the limiter has counted exactly 9."""
    client = fake_client().limited(Gate(slow_limiter))
    _pages(rsps, 12)
    read = bulk_import.iter_import_errors(client, "J1")
    with pytest.raises(Throttled) as caught:
        for _ in read:
            pass
    assert len(rsps.calls) == 9 and caught.value.wait > 0
    burst = rate_limit_key("lim", client.account, ops.GET_BULK_IMPORT_ERRORS.name, "bl")
    assert redis_client.llen(burst) == 9  # the burst log's own count


def test_the_real_limiter_pauses_the_operation_after_a_429(
        slow_limiter: RateLimiter, rsps: responses.RequestsMock) -> None:
    client = fake_client().limited(Gate(slow_limiter))
    rsps.get(f"{BASE}/api/lists/L1", status=429, headers={"Retry-After": "30"})
    with pytest.raises(RateLimited):
        lists.get_list(client, "L1")
    assert 29 < slow_limiter.cooldown_remaining(client.account, ops.GET_LIST) <= 30
    with pytest.raises(Throttled):  # the next request waits for the cool-down: not sent
        lists.get_list(client, "L1")
    assert len(rsps.calls) == 1


def test_every_answer_but_a_429_is_handed_back_with_its_ticket(
        limited: KlaviyoClient, counting: Counting, rsps: responses.RequestsMock) -> None:
    """The limiter learns from the RateLimit-* headers of successes and refusals alike; a 429
    carries Retry-After instead and only pauses the operation."""
    rate = {"RateLimit-Limit": "750", "RateLimit-Remaining": "700", "RateLimit-Reset": "12"}
    rsps.get(f"{BASE}/api/lists/L1", json={"data": {"type": "list", "id": "L1",
                                                     "attributes": {"name": "VIP"}}},
             headers=rate)
    rsps.get(f"{BASE}/api/lists/L2", status=404, json={"errors": []}, headers=rate)
    rsps.get(f"{BASE}/api/lists/L3", status=429, headers={"Retry-After": "3"})
    lists.get_list(limited, "L1")
    for missing in ("L2", "L3"):
        with pytest.raises(KlaviyoError):
            lists.get_list(limited, missing)
    assert counting.observed == [(ops.GET_LIST.name, 1, "700"), (ops.GET_LIST.name, 2, "700")]
    assert counting.cooled == [(ops.GET_LIST.name, 3.0)]
