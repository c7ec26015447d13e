"""Lists: find by exact name, read, create, and add/remove/read members by profile id."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from contract import operations as ops
from contract.spec import validate_request, validate_response
from tests.unit.klaviyo_fakes import BASE, sent
from worker.klaviyo.client import KlaviyoClient
from worker.klaviyo.errors import BatchTooLarge, NotFound
from worker.klaviyo.lists import (
    KlaviyoList,
    add_profiles_to_list,
    create_list,
    find_list_by_name,
    get_list,
    iter_list_profile_ids,
    iter_list_profiles,
    list_members_since,
    remove_profiles_from_list,
)

MEMBERS = f"{BASE}/api/lists/L1/relationships/profiles"


@pytest.fixture
def all_requests_fired() -> bool:
    """Every registered response must be used."""
    return True


def list_resource(list_id: str, name: str, opt_in: str | None = "single_opt_in") -> dict[str, Any]:
    """A ``list`` resource object as Klaviyo returns it."""
    return {"type": "list", "id": list_id, "links": {"self": f"{BASE}/api/lists/{list_id}"},
            "attributes": {"name": name, "opt_in_process": opt_in}}


def collection(items: list[dict[str, Any]], cursor: str | None = None) -> dict[str, Any]:
    """A collection page; ``cursor`` makes links.next point to the next page."""
    links = {"self": f"{BASE}/api/lists"}
    if cursor:
        links["next"] = f"{BASE}/api/lists?page%5Bcursor%5D={cursor}"
    return {"data": items, "links": links}


def query(call: Any) -> dict[str, list[str]]:
    """The decoded query string of a recorded request."""
    return parse_qs(urlsplit(call.request.url).query)


class TestFindListByName:
    """Only an exact name match counts, across every page."""

    def test_exact_match_on_a_later_page(
        self, client: KlaviyoClient, rsps: responses.RequestsMock
    ) -> None:
        """Given near-misses on page one, the exact name on page two is returned."""
        first = collection([list_resource("L0", "Buyers 2")], cursor="c2")
        second = collection([list_resource("L1", "Buyers", "double_opt_in")])
        validate_response(ops.GET_LISTS, 200, first)
        rsps.get(f"{BASE}/api/lists", json=first)
        rsps.get(f"{BASE}/api/lists", json=second)

        found = find_list_by_name(client, "Buyers")

        assert found == KlaviyoList("L1", "Buyers", "double_opt_in")
        assert query(rsps.calls[0]) == {"filter": ['equals(name,"Buyers")'], "page[size]": ["10"]}
        assert query(rsps.calls[1])["page[cursor]"] == ["c2"]

    def test_no_match(self, client: KlaviyoClient, rsps: responses.RequestsMock) -> None:
        """No list of that name gives None."""
        rsps.get(f"{BASE}/api/lists", json=collection([]))

        assert find_list_by_name(client, "Nobody") is None

    def test_name_is_quoted(self, client: KlaviyoClient, rsps: responses.RequestsMock) -> None:
        """Quotes and backslashes in a name are escaped inside the filter string."""
        rsps.get(f"{BASE}/api/lists", json=collection([]))

        find_list_by_name(client, 'VIP "gold" \\ list')

        assert query(rsps.calls[0])["filter"] == ['equals(name,"VIP \\"gold\\" \\\\ list")']


class TestReadAndCreate:
    """Reading and creating a list."""

    def test_get_list(self, client: KlaviyoClient, rsps: responses.RequestsMock) -> None:
        """A list is read by id."""
        document = {"data": list_resource("L1", "Buyers")}
        validate_response(ops.GET_LIST, 200, document)
        rsps.get(f"{BASE}/api/lists/L1", json=document)

        assert get_list(client, "L1") == KlaviyoList("L1", "Buyers", "single_opt_in")

    def test_get_missing_list(self, client: KlaviyoClient, rsps: responses.RequestsMock) -> None:
        """A missing list raises NotFound."""
        rsps.get(f"{BASE}/api/lists/NOPE", status=404, json={"errors": []})

        with pytest.raises(NotFound):
            get_list(client, "NOPE")

    @pytest.mark.parametrize("opt_in", [None, "single_opt_in", "double_opt_in"])
    def test_create_list(
        self, client: KlaviyoClient, rsps: responses.RequestsMock, opt_in: str | None
    ) -> None:
        """The body is spec-valid; opt_in_process is sent only when given."""
        document = {"data": list_resource("L9", "New", opt_in)}
        validate_response(ops.CREATE_LIST, 201, document)
        rsps.post(f"{BASE}/api/lists", status=201, json=document)

        created = create_list(client, "New", opt_in)

        body = sent(rsps)
        validate_request(ops.CREATE_LIST, body)
        assert ("opt_in_process" in body["data"]["attributes"]) is (opt_in is not None)
        assert created.id == "L9"

    def test_create_list_refuses_unknown_opt_in(
        self, client: KlaviyoClient, rsps: responses.RequestsMock
    ) -> None:
        """An unknown opt-in process is a ValueError and nothing is sent."""
        with pytest.raises(ValueError, match="opt_in_process"):
            create_list(client, "New", "triple_opt_in")
        assert len(rsps.calls) == 0


class TestMembers:
    """Members are added and removed by profile id, consent untouched."""

    @pytest.mark.parametrize(("function", "method", "op"), [
        (add_profiles_to_list, "POST", ops.ADD_PROFILES_TO_LIST),
        (remove_profiles_from_list, "DELETE", ops.REMOVE_PROFILES_FROM_LIST),
    ])
    def test_body_names_profile_ids(
        self, client: KlaviyoClient, rsps: responses.RequestsMock,
        function: Any, method: str, op: ops.Operation,
    ) -> None:
        """The ids go out as profile identifiers in a spec-valid body."""
        rsps.add(method, MEMBERS, status=204)

        function(client, "L1", ["P1", "P2"])

        body = sent(rsps)
        validate_request(op, body)
        assert body == {"data": [{"type": "profile", "id": "P1"}, {"type": "profile", "id": "P2"}]}

    @pytest.mark.parametrize("function", [add_profiles_to_list, remove_profiles_from_list])
    def test_no_ids_no_call(
        self, client: KlaviyoClient, rsps: responses.RequestsMock, function: Any
    ) -> None:
        """An empty batch sends nothing."""
        function(client, "L1", [])

        assert len(rsps.calls) == 0

    @pytest.mark.parametrize("function", [add_profiles_to_list, remove_profiles_from_list])
    def test_over_cap_refused(
        self, client: KlaviyoClient, rsps: responses.RequestsMock, function: Any
    ) -> None:
        """1,001 ids are refused before sending."""
        with pytest.raises(BatchTooLarge, match="the cap is 1,000"):
            function(client, "L1", [f"P{i}" for i in range(1001)])
        assert len(rsps.calls) == 0

    def test_iter_member_ids(self, client: KlaviyoClient, rsps: responses.RequestsMock) -> None:
        """Member ids are read 100 to a page."""
        document = {"data": [{"type": "profile", "id": "P1"}], "links": {"self": MEMBERS}}
        validate_response(ops.GET_LIST_PROFILE_IDS, 200, document)
        rsps.get(MEMBERS, json=document)

        assert list(iter_list_profile_ids(client, "L1")) == ["P1"]
        assert query(rsps.calls[0])["page[size]"] == ["100"]

    def test_iter_members_with_email(
        self, client: KlaviyoClient, rsps: responses.RequestsMock
    ) -> None:
        """Members come with their email, None for a phone-only profile."""
        joined = "2024-01-01T00:00:00+00:00"
        document = {"data": [
            {"type": "profile", "id": "P1", "links": {"self": f"{BASE}/api/profiles/P1"},
             "attributes": {"email": "ann@example.com", "joined_group_at": joined}},
            {"type": "profile", "id": "P2", "links": {"self": f"{BASE}/api/profiles/P2"},
             "attributes": {"email": None, "joined_group_at": joined}},
        ], "links": {"self": f"{BASE}/api/lists/L1/profiles"}}
        validate_response(ops.GET_LIST_PROFILES, 200, document)
        rsps.get(f"{BASE}/api/lists/L1/profiles", json=document)

        assert list(iter_list_profiles(client, "L1")) == [("P1", "ann@example.com"), ("P2", None)]
        assert query(rsps.calls[0])["fields[profile]"] == ["email"]

    def test_members_since_a_moment_page_by_page_oldest_join_first(
        self, client: KlaviyoClient, rsps: responses.RequestsMock
    ) -> None:
        """Recent joiners: ``joined_group_at`` filtered (greater-or-equal, whole seconds, Z)
        and sorted as the spec allows, one call per page, each page handed over as it comes."""
        url = f"{BASE}/api/lists/L1/profiles"

        def member(pid: str, joined: str) -> dict[str, Any]:
            return {"type": "profile", "id": pid, "links": {"self": f"{BASE}/api/profiles/{pid}"},
                    "attributes": {"email": f"{pid.lower()}@example.com",
                                   "joined_group_at": joined}}

        first = {"data": [member("P1", "2026-12-01T10:00:01.250000+00:00")],
                 "links": {"self": url, "next": f"{url}?page%5Bcursor%5D=c2"}}
        second = {"data": [member("P2", "2026-12-01T10:00:02+00:00")], "links": {"self": url}}
        validate_response(ops.GET_LIST_PROFILES, 200, first)
        rsps.get(url, json=first)
        rsps.get(url, json=second)
        since = datetime(2026, 12, 1, 10, 0, 0, 900_000, tzinfo=UTC)

        pages = list_members_since(client, "L1", since)
        page_one = next(pages)
        assert len(rsps.calls) == 1  # the second page is not read before it is wanted
        assert [m.id for m in page_one] == ["P1"]
        assert page_one[0].joined_group_at == datetime(2026, 12, 1, 10, 0, 1, 250_000,
                                                       tzinfo=UTC)
        assert [m.email for page in pages for m in page] == ["p2@example.com"]
        sent_query = query(rsps.calls[0])
        assert sent_query["filter"] == ["greater-or-equal(joined_group_at,2026-12-01T10:00:00Z)"]
        assert sent_query["sort"] == ["joined_group_at"]
        assert sent_query["fields[profile]"] == ["email,joined_group_at"]
        assert sent_query["page[size]"] == ["100"]
        assert query(rsps.calls[1])["page[cursor]"] == ["c2"]
