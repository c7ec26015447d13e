"""Cursor pagination: follow links.next by its page[cursor], always through our base URL."""

from __future__ import annotations

from typing import Any

import pytest
import responses
from responses import matchers

from contract import operations as ops
from contract.spec import validate_response
from tests.unit.klaviyo_fakes import BASE
from worker.klaviyo.client import KlaviyoClient
from worker.klaviyo.errors import TransientError
from worker.klaviyo.pagination import iter_pages, iter_resources, next_cursor, quote_filter_value

URL = f"{BASE}/api/lists/L1/relationships/profiles"
KLAVIYO = "https://a.klaviyo.com/api/lists/L1/relationships/profiles"


@pytest.fixture
def all_requests_fired() -> bool:
    """Every registered response must be used."""
    return True


def page(ids: list[str], next_cursor: str | None) -> dict[str, Any]:
    """One page of profile ids whose links.next (on Klaviyo's host) carries ``next_cursor``."""
    links = {"self": KLAVIYO}
    if next_cursor is not None:
        links["next"] = f"{KLAVIYO}?page%5Bsize%5D=2&page%5Bcursor%5D={next_cursor}"
    return {"data": [{"type": "profile", "id": i} for i in ids], "links": links}


def expect(rsps: responses.RequestsMock, query: dict[str, str], document: dict[str, Any]) -> None:
    """Answer ``document`` to exactly this query string."""
    rsps.get(URL, json=document, match=[matchers.query_param_matcher(query)])


class TestPagination:
    """Pages are walked by cursor until links.next disappears."""

    def test_three_pages(self, client: KlaviyoClient, rsps: responses.RequestsMock) -> None:
        """Given three pages, every resource comes back in order, each page fetched once."""
        # given
        expect(rsps, {"page[size]": "2"}, page(["P1", "P2"], "c2"))
        expect(rsps, {"page[size]": "2", "page[cursor]": "c2"}, page(["P3", "P4"], "c3"))
        expect(rsps, {"page[size]": "2", "page[cursor]": "c3"}, page(["P5"], None))

        # when
        found = [r["id"] for r in iter_resources(
            client, ops.GET_LIST_PROFILE_IDS, path={"id": "L1"}, params={"page[size]": "2"})]

        # then
        assert found == ["P1", "P2", "P3", "P4", "P5"]
        assert len(rsps.calls) == 3
        assert all(str(c.request.url).startswith(BASE) for c in rsps.calls)

    def test_pages_conform_to_the_spec(self) -> None:
        """The fake pages used here are documents Klaviyo could send."""
        for document in (page(["P1"], "c2"), page([], None)):
            validate_response(ops.GET_LIST_PROFILE_IDS, 200, document)

    def test_pages_are_lazy(self, client: KlaviyoClient, rsps: responses.RequestsMock) -> None:
        """Stopping early fetches no further page."""
        expect(rsps, {}, page(["P1", "P2"], "c2"))

        pages = iter_pages(client, ops.GET_LIST_PROFILE_IDS, path={"id": "L1"})

        assert next(pages)["data"][0]["id"] == "P1"
        assert len(rsps.calls) == 1

    def test_repeated_cursor_stops_with_an_error(
        self, client: KlaviyoClient, rsps: responses.RequestsMock
    ) -> None:
        """A server that hands back a cursor twice cannot make us loop forever."""
        expect(rsps, {}, page(["P1"], "c2"))
        expect(rsps, {"page[cursor]": "c2"}, page(["P2"], "c2"))

        with pytest.raises(TransientError, match="repeats"):
            list(iter_resources(client, ops.GET_LIST_PROFILE_IDS, path={"id": "L1"}))


class TestNextCursor:
    """The cursor is read from links.next exactly."""

    @pytest.mark.parametrize(("next_url", "expected"), [
        (f"{KLAVIYO}?page%5Bcursor%5D=abc", "abc"),
        (f"{KLAVIYO}?page[cursor]=abc&page[size]=100", "abc"),
        (f"{KLAVIYO}?page%5Bcursor%5D=a%2Bb%3D", "a+b="),
        (f"{KLAVIYO}?page%5Bcursor%5D=a+b", "a+b"),  # a raw "+" in a cursor is not a space
        (None, None),
        ("", None),
    ])
    def test_cursor(self, next_url: str | None, expected: str | None) -> None:
        """Encoded or raw, the cursor comes back as Klaviyo minted it."""
        document = {"data": [], "links": {"self": KLAVIYO, "next": next_url}}

        assert next_cursor(ops.GET_LISTS, document) == expected

    def test_next_without_cursor_is_an_error(self) -> None:
        """A next link we cannot follow is reported rather than silently ending the walk."""
        document = {"links": {"next": f"{KLAVIYO}?page%5Bsize%5D=2"}}

        with pytest.raises(TransientError, match="no page"):
            next_cursor(ops.GET_LISTS, document)


class TestFilterQuoting:
    """Filter strings are double-quoted with backslash escapes."""

    @pytest.mark.parametrize(("value", "expected"), [
        ("plain", '"plain"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("back\\slash", '"back\\\\slash"'),
        ('\\"', '"\\\\\\""'),
        ("ü+ñ@例え.jp", '"ü+ñ@例え.jp"'),
    ])
    def test_quote(self, value: str, expected: str) -> None:
        """Backslashes are doubled first, then quotes escaped; everything else is kept."""
        assert quote_filter_value(value) == expected
