"""Rate limits from the operation table: burst, steady and daily windows, per account."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import requests

from contract.operations import CREATE_LIST, GET_ACCOUNTS, GET_LISTS
from sandbox.server import SandboxServer, running_sandbox
from sandbox.testing import SandboxClient
from tests.conftest import free_port


@pytest.fixture(scope="module")
def real_speed() -> Iterator[SandboxServer]:
    with running_sandbox(port=free_port(), profile="fast") as sb:
        yield sb


@pytest.fixture(scope="module")
def fast() -> Iterator[SandboxServer]:
    """Speed 60: a minute lasts one second, a day 24 minutes."""
    with running_sandbox(port=free_port(), profile="fast", speed=60) as sb:
        yield sb


def _client(server: SandboxServer) -> SandboxClient:
    return SandboxClient(server.url, f"pk_limits_{uuid.uuid4().hex}")


def _start_of_second(fraction: float = 0.05) -> None:
    """Wait until just after a wall-clock second begins (Klaviyo aligns its windows)."""
    while time.time() % 1 > fraction:
        time.sleep(0.005)


def _create_list(api: SandboxClient, name: str = "l") -> requests.Response:
    return api.call("POST", "/api/lists", {"data": {"type": "list", "attributes": {"name": name}}})


def test_the_call_past_the_burst_in_one_second_gets_429(real_speed: SandboxServer) -> None:
    api = _client(real_speed)
    _start_of_second()
    statuses = [_create_list(api).status_code for _ in range(CREATE_LIST.burst + 1)]
    assert statuses == [201] * CREATE_LIST.burst + [429]
    refused = _create_list(api)
    assert refused.status_code == 429
    retry_after = refused.headers["Retry-After"]
    assert retry_after.isdigit() and int(retry_after) >= 1
    problem = refused.json()["errors"][0]
    assert problem["code"] == "throttled" and "burst" in problem["detail"]
    assert "RateLimit-Remaining" not in refused.headers


def test_rate_limit_headers_describe_the_steady_window(real_speed: SandboxServer) -> None:
    api = _client(real_speed)
    first, second = api.call("GET", "/api/lists"), api.call("GET", "/api/lists")
    assert first.headers["RateLimit-Limit"] == str(GET_LISTS.steady)
    assert int(first.headers["RateLimit-Remaining"]) == GET_LISTS.steady - 1
    assert int(second.headers["RateLimit-Remaining"]) == GET_LISTS.steady - 2
    assert 1 <= int(first.headers["RateLimit-Reset"]) <= 60
    bad = api.call("GET", "/api/lists/nope00")
    assert bad.status_code == 404 and "RateLimit-Limit" in bad.headers


def test_each_account_and_operation_has_its_own_quota(real_speed: SandboxServer) -> None:
    one, other = _client(real_speed), _client(real_speed)
    _start_of_second()
    assert [one.call("GET", "/api/accounts").status_code for _ in range(2)] == [200, 429]
    assert other.call("GET", "/api/accounts").status_code == 200
    assert one.call("GET", "/api/lists").status_code == 200


def test_the_call_past_the_steady_limit_in_one_minute_gets_429(fast: SandboxServer) -> None:
    api = _client(fast)
    _start_of_second()  # the steady window (60 virtual s) is one real second here
    remaining = []
    for _ in range(GET_ACCOUNTS.steady):
        resp = api.call("GET", "/api/accounts")
        assert resp.status_code == 200, resp.text
        remaining.append(int(resp.headers["RateLimit-Remaining"]))
        time.sleep(1.2 / 60)  # past the burst window (1 virtual s = 1/60 s)
    assert remaining[-1] == 0
    refused = api.call("GET", "/api/accounts")
    assert refused.status_code == 429
    assert "steady" in refused.json()["errors"][0]["detail"]
    wait = float(refused.headers["Retry-After"])  # real seconds, fractional at speed ≠ 1
    assert 0 < wait <= 1.0
    time.sleep(wait + 0.02)
    assert api.call("GET", "/api/accounts").status_code == 200


def test_the_151st_list_creation_in_a_day_is_refused(fast: SandboxServer) -> None:
    day = 86_400 / 60  # a virtual day in real seconds at speed 60
    if day - time.time() % day < 15:
        time.sleep(day - time.time() % day + 0.1)  # never straddle midnight
    api = _client(fast)
    created = 0
    while created < CREATE_LIST.daily:  # type: ignore[operator]
        resp = _create_list(api, f"l{created}")
        if resp.status_code == 429:
            time.sleep(float(resp.headers["Retry-After"]))
            continue
        assert resp.status_code == 201, resp.text
        created += 1
    time.sleep(1.05)  # a fresh steady window: only the daily cap is left
    refused = _create_list(api, "one too many")
    assert refused.status_code == 429
    assert "daily" in refused.json()["errors"][0]["detail"]
    assert float(refused.headers["Retry-After"]) > 1.0
    assert _client(fast).call("POST", "/api/lists", {"data": {"type": "list", "attributes": {
        "name": "another account"}}}).status_code == 201
