"""Fault injection: error rates, latency, dropped connections, 429 storms, revoked keys."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import requests

from sandbox.server import SandboxServer, running_sandbox
from sandbox.testing import SandboxClient
from tests.conftest import free_port, wait_until

pytestmark = pytest.mark.faults


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with running_sandbox(port=free_port(), profile="fast") as sb:
        yield sb


@pytest.fixture
def api(server: SandboxServer) -> Iterator[SandboxClient]:
    client = SandboxClient(server.url, f"pk_faults_{uuid.uuid4().hex}", timeout=10)
    yield client
    client.session.delete(f"{server.url}/_sandbox/faults", timeout=10)


def test_error_rate_answers_injected_5xx_in_klaviyo_shape(api: SandboxClient) -> None:
    api.admin("POST", "faults", {"error_rate": 1.0, "statuses": [503]})
    resp = api.call("GET", "/api/lists")
    assert resp.status_code == 503
    assert resp.json()["errors"][0]["status"] == 503
    api.admin("POST", "faults", {"error_rate": 0.5, "statuses": [500, 502]})
    statuses = {api.call("GET", "/api/lists").status_code for _ in range(40)}
    assert statuses <= {200, 500, 502} and 200 in statuses and statuses & {500, 502}
    api.admin("DELETE", "faults")
    assert api.call("GET", "/api/lists").status_code == 200


def test_latency_delays_answers(api: SandboxClient) -> None:
    api.admin("POST", "faults", {"latency_ms": 250})
    started = time.monotonic()
    assert api.call("GET", "/api/lists").status_code == 200
    assert time.monotonic() - started >= 0.25


def test_drop_closes_the_connection_without_a_response(api: SandboxClient) -> None:
    api.admin("POST", "faults", {"drop_rate": 1.0})
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{api.base_url}/api/lists", headers=api.headers, timeout=10)
    api.admin("DELETE", "faults")
    assert api.call("GET", "/api/lists").status_code == 200
    dropped = api.admin("GET", "stats")["operations"]["get_lists"]["statuses"]
    assert dropped.get("dropped", 0) >= 1


def test_storm_forces_429_for_every_call_then_ends(api: SandboxClient) -> None:
    api.admin("POST", "faults", {"storm": {"seconds": 0.6, "retry_after": 2}})
    for path in ("/api/lists", "/api/accounts", "/api/profiles"):
        resp = api.call("GET", path)
        assert resp.status_code == 429
        assert resp.headers["Retry-After"] == "2"
        assert resp.json()["errors"][0]["code"] == "throttled"
    wait_until(lambda: api.call("GET", "/api/lists").status_code == 200, timeout=5,
               message="the storm to end")


def test_auth_fail_revokes_every_key_until_cleared(api: SandboxClient) -> None:
    assert api.call("GET", "/api/lists").status_code == 200
    api.admin("POST", "faults", {"auth_fail": True})
    resp = api.call("GET", "/api/lists")
    assert resp.status_code == 401
    assert resp.json()["errors"][0]["code"] == "not_authenticated"
    api.admin("DELETE", "faults")
    assert api.call("GET", "/api/lists").status_code == 200


def test_only_operations_narrows_faults(api: SandboxClient) -> None:
    api.admin("POST", "faults", {"error_rate": 1.0, "statuses": [500],
                                 "only_operations": ["bulk_subscribe_profiles"]})
    list_id = api.create_list("narrow")
    assert api.call("GET", f"/api/lists/{list_id}").status_code == 200
    body = {"data": {"type": "profile-subscription-bulk-create-job", "attributes": {
        "profiles": {"data": []}}}}
    assert api.call("POST", "/api/profile-subscription-bulk-create-jobs", body).status_code == 500


def test_a_bad_fault_configuration_is_refused(api: SandboxClient) -> None:
    resp = api.session.post(f"{api.base_url}/_sandbox/faults", json={"error_rate": 2},
                            timeout=10)
    assert resp.status_code == 400 and "error_rate" in resp.json()["error"]
    assert api.admin("GET", "faults")["error_rate"] == 0.0
