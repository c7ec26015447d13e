"""Profiles: upsert one, and look ids up by email with correctly quoted filters."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
import responses
from requests import PreparedRequest

from contract import operations as ops
from contract.spec import validate_request, validate_response
from tests.unit.klaviyo_fakes import BASE
from worker.klaviyo.client import KlaviyoClient
from worker.klaviyo.errors import BatchTooLarge, TransientError
from worker.klaviyo.profiles import email_filter, find_profile_ids, upsert_profile

PROFILES = f"{BASE}/api/profiles"


def profile(profile_id: str, email: str | None) -> dict[str, Any]:
    """A ``profile`` resource object as Klaviyo returns it."""
    return {"type": "profile", "id": profile_id, "attributes": {"email": email},
            "links": {"self": f"{PROFILES}/{profile_id}"}}


class TestUpsert:
    """One profile is created (201) or updated (200)."""

    @pytest.mark.parametrize(("status", "created"), [(201, True), (200, False)])
    def test_upsert(
        self, client: KlaviyoClient, rsps: responses.RequestsMock, status: int, created: bool
    ) -> None:
        """The id comes back with whether Klaviyo created the profile."""
        document = {"data": profile("P1", "ann@example.com")}
        validate_response(ops.PROFILE_IMPORT, status, document)
        rsps.post(f"{BASE}/api/profile-import", status=status, json=document)

        assert upsert_profile(client, {"email": "ann@example.com"}) == ("P1", created)

    def test_body_is_spec_valid_with_nulls_and_nesting(
        self, client: KlaviyoClient, rsps: responses.RequestsMock
    ) -> None:
        """Standard fields, a location, custom properties and nulls (clear) are all valid."""
        rsps.post(f"{BASE}/api/profile-import", status=200, json={"data": profile("P1", None)})
        attributes = {
            "email": "ann@example.com", "phone_number": "+15005550006", "external_id": "u-1",
            "first_name": "Ann", "last_name": None, "organization": None, "locale": "en-US",
            "title": None, "image": None,
            "location": {"city": "Oslo", "country": "Norway", "zip": None, "latitude": 59.91,
                         "longitude": "10.75", "timezone": "Europe/Oslo", "ip": None},
            "properties": {"plan": "gold", "score": 3, "tags": ["a", "b"], "vip": True},
        }

        upsert_profile(client, attributes)

        body = orjson.loads(rsps.calls[0].request.body or b"")
        validate_request(ops.PROFILE_IMPORT, body)
        assert body == {"data": {"type": "profile", "attributes": attributes}}

    def test_missing_id_is_transient(
        self, client: KlaviyoClient, rsps: responses.RequestsMock
    ) -> None:
        """An answer without an id (the spec allows null) is retriable, not a crash."""
        rsps.post(f"{BASE}/api/profile-import", status=200,
                  json={"data": {"type": "profile", "id": None, "attributes": {},
                                 "links": {"self": PROFILES}}})

        with pytest.raises(TransientError, match="without a profile id"):
            upsert_profile(client, {"email": "ann@example.com"})

    def test_oversized_profile_refused(
        self, client: KlaviyoClient, rsps: responses.RequestsMock
    ) -> None:
        """A profile over 100 KB is refused before sending."""
        with pytest.raises(BatchTooLarge, match="create_or_update_profile"):
            upsert_profile(client, {"email": "a@x.io", "properties": {"blob": "x" * 110_000}})
        assert len(rsps.calls) == 0


class TestEmailFilter:
    """``any(email,[...])`` with every value quoted."""

    @pytest.mark.parametrize(("emails", "expected"), [
        (["a@x.io"], 'any(email,["a@x.io"])'),
        (["a@x.io", "b@y.io"], 'any(email,["a@x.io","b@y.io"])'),
        (["a+tag@x.io"], 'any(email,["a+tag@x.io"])'),
        (['"q"@x.io'], 'any(email,["\\"q\\"@x.io"])'),
        (["back\\slash@x.io"], 'any(email,["back\\\\slash@x.io"])'),
        (["jürgen@bücher.de"], 'any(email,["jürgen@bücher.de"])'),
    ])
    def test_filter(self, emails: list[str], expected: str) -> None:
        """Quotes and backslashes are escaped; ``+`` and unicode are kept as they are."""
        assert email_filter(emails) == expected

    def test_empty_is_an_error(self) -> None:
        """A filter over no emails would match nothing useful, so it is refused."""
        with pytest.raises(ValueError, match="at least one"):
            email_filter([])

    def test_wire_encoding(self, client: KlaviyoClient, rsps: responses.RequestsMock) -> None:
        """On the wire ``+`` is %2B (never a space), and the filter decodes back exactly."""
        rsps.get(PROFILES, json={"data": [], "links": {"self": PROFILES}})

        find_profile_ids(client, ["a+tag@x.io", 'q"uote@x.io', "jürgen@bücher.de"])

        raw = query_string(rsps.calls[0])
        assert "a%2Btag%40x.io" in raw
        assert "+" not in raw.replace("%2B", "")
        assert "j%C3%BCrgen" in raw
        assert parse_qs(raw)["filter"] == [
            'any(email,["a+tag@x.io","q\\"uote@x.io","jürgen@bücher.de"])'
        ]


def query_string(call: Any) -> str:
    """The raw (still encoded) query string of a recorded request."""
    return urlsplit(str(call.request.url)).query


def answer_known(known: dict[str, str]) -> Any:
    """A fake ``GET /api/profiles`` answering the filter's emails that ``known`` holds."""
    def callback(request: PreparedRequest) -> tuple[int, dict[str, str], str]:
        query = parse_qs(urlsplit(str(request.url)).query)
        asked = re.findall(r'"((?:[^"\\]|\\.)*)"', query["filter"][0])
        data = [profile(known[e], e.upper()) for e in asked if e in known]
        return 200, {}, orjson.dumps({"data": data, "links": {"self": PROFILES}}).decode()
    return callback


class TestFindProfileIds:
    """Ids are looked up 100 emails at a time, keyed by lower-cased email."""

    def test_chunks_of_one_hundred(
        self, client: KlaviyoClient, rsps: responses.RequestsMock
    ) -> None:
        """Given 250 distinct emails, three look-ups of 100, 100 and 50 are made."""
        # given
        emails = [f"user{i}@x.io" for i in range(250)]
        known = {e: f"P{i}" for i, e in enumerate(emails) if i % 2 == 0}
        rsps.add_callback(responses.GET, PROFILES, callback=answer_known(known))

        # when
        found = find_profile_ids(client, emails)

        # then
        assert found == known
        queries = [parse_qs(query_string(c)) for c in rsps.calls]
        assert [q["filter"][0].count("@") for q in queries] == [100, 100, 50]
        assert all(q["page[size]"] == ["100"] for q in queries)

    def test_case_and_duplicates_collapse(
        self, client: KlaviyoClient, rsps: responses.RequestsMock
    ) -> None:
        """``Ann@X.io`` and ``ann@x.io`` are one look-up, answered under the lower-cased key."""
        rsps.add_callback(responses.GET, PROFILES, callback=answer_known({"ann@x.io": "P1"}))

        assert find_profile_ids(client, ["Ann@X.io", "ann@x.io", " "]) == {"ann@x.io": "P1"}
        assert len(rsps.calls) == 1

    def test_pages_within_a_chunk(
        self, client: KlaviyoClient, rsps: responses.RequestsMock
    ) -> None:
        """A chunk whose answer spans pages is read to the end."""
        first = {"data": [profile("P1", "a@x.io")],
                 "links": {"self": PROFILES, "next": f"{PROFILES}?page%5Bcursor%5D=c2"}}
        validate_response(ops.GET_PROFILES, 200, first)
        rsps.get(PROFILES, json=first)
        rsps.get(PROFILES, json={"data": [profile("P2", "b@x.io")], "links": {"self": PROFILES}})

        assert find_profile_ids(client, ["a@x.io", "b@x.io"]) == {"a@x.io": "P1", "b@x.io": "P2"}

    def test_no_emails_no_call(self, client: KlaviyoClient, rsps: responses.RequestsMock) -> None:
        """Nothing to look up sends nothing."""
        assert find_profile_ids(client, []) == {}
        assert len(rsps.calls) == 0
