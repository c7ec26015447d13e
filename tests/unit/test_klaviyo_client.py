"""The Klaviyo client: one session, one status→action table, caps before sending, no secrets."""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import requests
import responses

from contract import operations as ops
from core.settings import load_settings
from tests.unit.klaviyo_fakes import BASE, REVISION, fake_client
from worker.klaviyo import client as client_module
from worker.klaviyo.client import (
    KlaviyoClient,
    client_for,
    from_settings,
    reset_clients,
)
from worker.klaviyo.errors import (
    AuthError,
    BatchTooLarge,
    InvalidRequest,
    KlaviyoError,
    NotFound,
    RateLimited,
    TransientError,
)
from worker.klaviyo.statuses import parse_retry_after

KEY = "pk_secret_0123456789abcdef"
LIST_URL = f"{BASE}/api/lists/L1"


@pytest.fixture(name="client")
def _client() -> KlaviyoClient:
    return fake_client(KEY)


def error_body(detail: str = "bad", pointer: str | None = "/data") -> dict[str, Any]:
    """A JSON:API error document as Klaviyo sends it."""
    source = {"pointer": pointer} if pointer else {}
    return {"errors": [{"id": "e1", "status": 400, "code": "invalid", "title": "Invalid input",
                        "detail": detail, "source": source}]}


class TestSession:
    """Every request carries the same configured headers."""

    def test_headers_on_the_wire(self, client: KlaviyoClient, rsps: responses.RequestsMock) -> None:
        """Auth, revision, JSON:API media types and our User-Agent are sent on every call."""
        rsps.get(LIST_URL, json={"data": {"type": "list", "id": "L1", "attributes": {}}})

        client.call(ops.GET_LIST, path={"id": "L1"})

        headers = rsps.calls[0].request.headers
        assert headers["Authorization"] == f"Klaviyo-API-Key {KEY}"
        assert headers["revision"] == REVISION
        assert headers["Accept"] == "application/vnd.api+json"
        assert headers["Content-Type"] == "application/vnd.api+json"
        assert headers["User-Agent"].startswith("klaviyo-audience-export/")

    def test_success_returns_status_document_and_headers(
        self, client: KlaviyoClient, rsps: responses.RequestsMock
    ) -> None:
        """A 2xx answer comes back as a KlaviyoResponse with the parsed document."""
        rsps.get(LIST_URL, json={"data": {"id": "L1"}}, headers={"RateLimit-Remaining": "9"})

        response = client.call(ops.GET_LIST, path={"id": "L1"})

        assert response.status == 200
        assert response.document == {"data": {"id": "L1"}}
        assert response.headers["RateLimit-Remaining"] == "9"

    def test_no_content_has_no_document(
        self, client: KlaviyoClient, rsps: responses.RequestsMock
    ) -> None:
        """A 204 has document None."""
        rsps.post(f"{LIST_URL}/relationships/profiles", status=204)

        response = client.call(ops.ADD_PROFILES_TO_LIST, path={"id": "L1"},
                               body={"data": [{"type": "profile", "id": "P1"}]})

        assert (response.status, response.document) == (204, None)

    def test_path_values_are_quoted(
        self, client: KlaviyoClient, rsps: responses.RequestsMock
    ) -> None:
        """A path value cannot escape its segment."""
        rsps.get(f"{BASE}/api/lists/a%2Fb", json={"data": {}})

        client.call(ops.GET_LIST, path={"id": "a/b"})

        assert rsps.calls[0].request.path_url == "/api/lists/a%2Fb"

    def test_redirects_are_not_followed(
        self, client: KlaviyoClient, rsps: responses.RequestsMock
    ) -> None:
        """A 3xx is reported as transient, and its Location is never requested."""
        rsps.get(LIST_URL, status=302, headers={"Location": "http://127.0.0.1:9/elsewhere"})

        with pytest.raises(TransientError):
            client.call(ops.GET_LIST, path={"id": "L1"})
        assert len(rsps.calls) == 1

    def test_a_2xx_that_is_not_json_is_transient(
        self, client: KlaviyoClient, rsps: responses.RequestsMock
    ) -> None:
        """A success whose body cannot be parsed is retriable, not a crash."""
        rsps.get(LIST_URL, body="<html>proxy</html>", status=200)

        with pytest.raises(TransientError, match="not a JSON object"):
            client.call(ops.GET_LIST, path={"id": "L1"})


STATUS_TABLE = [
    (400, InvalidRequest), (401, AuthError), (403, AuthError), (404, NotFound),
    (405, InvalidRequest), (408, TransientError), (409, InvalidRequest), (413, InvalidRequest),
    (422, InvalidRequest), (429, RateLimited), (500, TransientError), (502, TransientError),
    (503, TransientError), (504, TransientError), (301, TransientError), (599, TransientError),
]


class TestStatusTable:
    """One table decides the exception for every status."""

    @pytest.mark.parametrize(("status", "expected"), STATUS_TABLE)
    def test_status_maps_to_exception(
        self, client: KlaviyoClient, rsps: responses.RequestsMock,
        status: int, expected: type[KlaviyoError],
    ) -> None:
        """Each status raises exactly its table's exception, carrying the status."""
        rsps.get(LIST_URL, status=status, json=error_body())

        with pytest.raises(KlaviyoError) as caught:
            client.call(ops.GET_LIST, path={"id": "L1"})

        assert type(caught.value) is expected
        assert caught.value.status == status
        assert "get_list" in str(caught.value)
        assert str(status) in str(caught.value)

    def test_problems_carry_pointers(
        self, client: KlaviyoClient, rsps: responses.RequestsMock
    ) -> None:
        """A 400's errors[] become problems that name the bad bulk item."""
        rsps.post(f"{BASE}/api/profile-bulk-import-jobs", status=400,
                  json=error_body(pointer="/data/attributes/profiles/data/7/attributes/email"))

        with pytest.raises(InvalidRequest) as caught:
            client.call(ops.BULK_IMPORT, body={"data": {"type": "profile-bulk-import-job"}})

        assert caught.value.problems[0].code == "invalid"
        assert caught.value.bad_items() == {7}

    def test_emails_in_klaviyo_errors_are_masked(
        self, client: KlaviyoClient, rsps: responses.RequestsMock
    ) -> None:
        """An email echoed in an error detail never reaches the message unmasked."""
        rsps.get(LIST_URL, status=400, json=error_body(detail="ann.lee@example.com is invalid"))

        with pytest.raises(InvalidRequest) as caught:
            client.call(ops.GET_LIST, path={"id": "L1"})

        assert "ann.lee@example.com" not in str(caught.value)
        assert "a***@example.com" in str(caught.value)

    def test_rate_limited_carries_retry_after(
        self, client: KlaviyoClient, rsps: responses.RequestsMock
    ) -> None:
        """A 429's Retry-After becomes ``retry_after`` in seconds."""
        rsps.get(LIST_URL, status=429, headers={"Retry-After": "7"}, json=error_body())

        with pytest.raises(RateLimited) as caught:
            client.call(ops.GET_LIST, path={"id": "L1"})

        assert caught.value.retry_after == 7.0

    def test_rate_limited_without_usable_retry_after(
        self, client: KlaviyoClient, rsps: responses.RequestsMock
    ) -> None:
        """A 429 with a garbage Retry-After still raises RateLimited, with no hint."""
        rsps.get(LIST_URL, status=429, headers={"Retry-After": "soon"})

        with pytest.raises(RateLimited) as caught:
            client.call(ops.GET_LIST, path={"id": "L1"})

        assert caught.value.retry_after is None


class TestRetryAfter:
    """``Retry-After`` is seconds or an HTTP-date; anything else is no hint."""

    NOW = datetime(2015, 10, 21, 7, 27, 30, tzinfo=UTC)

    @pytest.mark.parametrize(("value", "expected"), [
        ("120", 120.0),
        (" 3 ", 3.0),
        ("1.5", 1.5),
        ("0", 0.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:00:00 GMT", 0.0),  # already past: go now
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("nan", None),
        ("Wed, 99 Oct 2015 07:28:00 GMT", None),
    ])
    def test_parse(self, value: str | None, expected: float | None) -> None:
        """Each form parses to seconds from now, or to None."""
        assert parse_retry_after(value, now=self.NOW) == expected


class TestTransport:
    """Timeouts and dropped connections are transient, and say nothing private."""

    @pytest.mark.parametrize("failure", [
        requests.ConnectTimeout("connect timed out"),
        requests.ReadTimeout("read timed out"),
        requests.ConnectionError("connection reset"),
        requests.exceptions.ChunkedEncodingError("truncated"),
    ])
    def test_transport_failure_is_transient(
        self, client: KlaviyoClient, rsps: responses.RequestsMock, failure: Exception
    ) -> None:
        """The failure becomes TransientError with no chained request (which holds the key)."""
        rsps.get(f"{BASE}/api/profiles", body=failure)

        with pytest.raises(TransientError) as caught:
            client.call(ops.GET_PROFILES, params={"filter": 'any(email,["ann@example.com"])'})

        assert caught.value.__cause__ is None
        assert caught.value.__suppress_context__
        assert type(failure).__name__ in str(caught.value)
        assert "ann" not in str(caught.value)

    def test_timeouts_are_configured(self, rsps: responses.RequestsMock) -> None:
        """The connect and read timeouts reach requests on every call."""
        rsps.get(LIST_URL, json={"data": {}})
        client = KlaviyoClient(KEY, base_url=BASE, revision=REVISION,
                               connect_timeout=1.5, read_timeout=9.0)

        client.call(ops.GET_LIST, path={"id": "L1"})

        assert rsps.calls[0].request.req_kwargs["timeout"] == (1.5, 9.0)  # type: ignore[attr-defined]


def ids(n: int) -> list[dict[str, str]]:
    """``n`` profile identifiers as list-membership items."""
    return [{"type": "profile", "id": f"P{i}"} for i in range(n)]


def import_body(profiles: list[dict[str, Any]]) -> dict[str, Any]:
    """A bulk import body around these profile attribute dicts."""
    data = [{"type": "profile", "attributes": p} for p in profiles]
    return {"data": {"type": "profile-bulk-import-job",
                     "attributes": {"profiles": {"data": data}}}}


class TestCaps:
    """Batches over an operation's cap are refused before anything is sent."""

    @pytest.mark.parametrize(("op", "body", "fragment"), [
        (ops.ADD_PROFILES_TO_LIST, {"data": ids(1001)},
         "1,001 items in one call; the cap is 1,000"),
        (ops.REMOVE_PROFILES_FROM_LIST, {"data": ids(1001)}, "the cap is 1,000"),
        (ops.BULK_IMPORT, import_body([{"email": f"u{i}@x.io"} for i in range(10_001)]),
         "10,001 items in one call; the cap is 10,000"),
        (ops.BULK_IMPORT, import_body([{"email": "a@x.io", "properties": {"n": "x" * 60_000}}
                                       for _ in range(90)]), "bytes; the cap is 5,242,880"),
        (ops.BULK_IMPORT, import_body([{"email": "a@x.io"}, {"properties": {"n": "x" * 110_000}}]),
         "item 1 is"),
        (ops.PROFILE_IMPORT, {"data": {"type": "profile",
                                       "attributes": {"properties": {"n": "x" * 110_000}}}},
         "the cap is 102,400"),
    ])
    def test_over_cap_is_refused_without_a_call(
        self, client: KlaviyoClient, rsps: responses.RequestsMock,
        op: ops.Operation, body: dict[str, Any], fragment: str,
    ) -> None:
        """BatchTooLarge names the operation and the cap, and no request leaves."""
        with pytest.raises(BatchTooLarge) as caught:
            client.call(op, path={"id": "L1"}, body=body)

        assert op.name in str(caught.value)
        assert fragment in str(caught.value)
        assert len(rsps.calls) == 0

    def test_page_size_over_cap_is_refused(
        self, client: KlaviyoClient, rsps: responses.RequestsMock
    ) -> None:
        """A page size above the operation's maximum is refused too."""
        with pytest.raises(BatchTooLarge, match="page size 11 is over the cap of 10"):
            client.call(ops.GET_LISTS, params={"page[size]": "11"})
        assert len(rsps.calls) == 0

    def test_exactly_at_cap_is_sent(
        self, client: KlaviyoClient, rsps: responses.RequestsMock
    ) -> None:
        """A batch of exactly the cap goes out."""
        rsps.post(f"{LIST_URL}/relationships/profiles", status=204)

        client.call(ops.ADD_PROFILES_TO_LIST, path={"id": "L1"}, body={"data": ids(1000)})

        assert len(orjson.loads(rsps.calls[0].request.body or b"")["data"]) == 1000


class TestSecrecy:
    """The key never shows: not in repr, not in any exception."""

    def test_repr_and_account(self, client: KlaviyoClient) -> None:
        """repr shows the fingerprint, which is SHA-256's first 12 hex digits, never the key."""
        assert client.account == hashlib.sha256(KEY.encode()).hexdigest()[:12]
        assert KEY not in repr(client)
        assert KEY not in str(client)
        assert client.account in repr(client)

    @pytest.mark.parametrize(("status", "expected"), STATUS_TABLE)
    def test_key_absent_from_every_exception(
        self, client: KlaviyoClient, rsps: responses.RequestsMock,
        status: int, expected: type[KlaviyoError],
    ) -> None:
        """Neither str, repr, args nor the pickled exception contain the key."""
        rsps.get(LIST_URL, status=status, json=error_body())

        with pytest.raises(expected) as caught:
            client.call(ops.GET_LIST, path={"id": "L1"})

        exc = caught.value
        assert KEY not in f"{exc} {exc!r} {exc.args!r}"
        assert KEY.encode() not in pickle.dumps(exc)

    def test_key_absent_from_cap_and_transport_errors(
        self, client: KlaviyoClient, rsps: responses.RequestsMock
    ) -> None:
        """Errors raised on our side never mention the key either."""
        rsps.get(LIST_URL, body=requests.ConnectionError(f"boom {KEY}"))
        with pytest.raises(TransientError) as transport:
            client.call(ops.GET_LIST, path={"id": "L1"})
        with pytest.raises(BatchTooLarge) as cap:
            client.call(ops.ADD_PROFILES_TO_LIST, path={"id": "L1"}, body={"data": ids(1001)})

        for exc in (transport.value, cap.value):
            assert KEY not in f"{exc} {exc!r} {exc.args!r}"
            assert KEY.encode() not in pickle.dumps(exc)


class TestProcessCache:
    """Each process keeps one client (one session) per key and settings."""

    @pytest.fixture(autouse=True)
    def _fresh(self) -> Iterator[None]:
        reset_clients()
        load_settings.cache_clear()
        yield
        reset_clients()
        load_settings.cache_clear()

    def test_same_key_same_client(self) -> None:
        """Asking twice for a key returns the same client; another key gets another."""
        first = client_for(KEY, base_url=BASE, revision=REVISION)

        assert client_for(KEY, base_url=BASE, revision=REVISION) is first
        assert client_for("pk_other", base_url=BASE, revision=REVISION) is not first

    def test_cache_keys_hold_no_key(self) -> None:
        """The cache is keyed by a digest, so it never stores the key as a dict key."""
        client_for(KEY, base_url=BASE, revision=REVISION)

        assert all(KEY not in repr(k) for k in client_module._CLIENTS)

    def test_from_settings(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Base URL, revision and timeouts come from the settings."""
        monkeypatch.setenv("KLAVIYO_REVISION", "2025-01-15")
        monkeypatch.setenv("HTTP_READ_TIMEOUT", "12")

        client = from_settings(KEY)

        assert client.base_url == "http://127.0.0.1:9"
        assert client.revision == "2025-01-15"
        assert client.timeout == (5.0, 12.0)
        assert from_settings(KEY) is client
