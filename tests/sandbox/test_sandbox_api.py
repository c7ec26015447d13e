"""The sandbox keeps Klaviyo's contract: auth, revision, schemas, caps, upserts, paging."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from contract.operations import BY_NAME
from sandbox.server import SandboxServer, running_sandbox
from sandbox.testing import SandboxClient, profiles_payload
from sandbox.validation import check_response
from tests.conftest import free_port


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with running_sandbox(port=free_port(), profile="fast", job_delay=0.05) as sb:
        yield sb


@pytest.fixture
def api(server: SandboxServer) -> SandboxClient:
    """A client on a fresh account (its own key), so tests never share quotas."""
    return SandboxClient(server.url, f"pk_test_{uuid.uuid4().hex}")


def _problem(resp: requests.Response, status: int, op: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    document = resp.json()
    check_response(BY_NAME[op], status, document)
    return dict(document["errors"][0])


def _upsert(api: SandboxClient, **attributes: Any) -> requests.Response:
    return api.call("POST", "/api/profile-import",
                    {"data": {"type": "profile", "attributes": attributes}})


# -- every request -----------------------------------------------------------------------


@pytest.mark.parametrize("authorization", [None, "Klaviyo-API-Key", "Bearer pk_x",
                                           "Klaviyo-API-Key sk_wrong"])
def test_a_missing_or_wrong_key_is_401(api: SandboxClient, authorization: str | None) -> None:
    headers = {"revision": "2026-07-15"}
    if authorization:
        headers["Authorization"] = authorization
    resp = requests.get(f"{api.base_url}/api/lists", headers=headers, timeout=10)
    assert _problem(resp, 401, "get_lists")["code"] == "not_authenticated"
    assert "RateLimit-Limit" not in resp.headers


def test_revision_is_required_and_checked(api: SandboxClient) -> None:
    missing = SandboxClient(api.base_url, "pk_rev", revision=None).call("GET", "/api/lists")
    assert _problem(missing, 400, "get_lists")["source"] == {"parameter": "revision"}
    garbled = api.call("GET", "/api/lists", headers={"revision": "yesterday"})
    assert _problem(garbled, 400, "get_lists")["source"] == {"parameter": "revision"}


def test_a_body_the_spec_refuses_is_400_with_a_pointer(api: SandboxClient) -> None:
    resp = api.call("POST", "/api/lists", {"data": {"type": "list", "attributes": {
        "name": "x", "opt_in_process": "triple_opt_in"}}})
    assert _problem(resp, 400, "create_list")["source"]["pointer"] == \
        "/data/attributes/opt_in_process"
    wrong_type = api.call("POST", "/api/profile-import", {"data": {"type": "list",
                                                                   "attributes": {}}})
    assert _problem(wrong_type, 400, "create_or_update_profile")["source"]["pointer"] == \
        "/data/type"
    not_json = api.session.post(f"{api.base_url}/api/lists", data=b"{", headers=api.headers,
                                timeout=10)
    assert not_json.status_code == 400


def test_unknown_paths_are_klaviyo_shaped_404(api: SandboxClient) -> None:
    resp = api.call("GET", "/api/no-such-thing")
    assert resp.status_code == 404
    assert resp.json()["errors"][0]["code"] == "not_found"


def test_each_key_is_its_own_account(api: SandboxClient, server: SandboxServer) -> None:
    list_id = api.create_list("Mine")
    other = SandboxClient(server.url, "pk_someone_else")
    assert other.call("GET", f"/api/lists/{list_id}").status_code == 404
    found = other.call("GET", "/api/lists", filter='equals(name,"Mine")').json()["data"]
    assert found == []


# -- caps --------------------------------------------------------------------------------


def test_subscribe_over_1000_profiles_is_refused_by_name(api: SandboxClient) -> None:
    list_id = api.create_list("caps")
    body = {"data": {"type": "profile-subscription-bulk-create-job", "attributes": {
        "profiles": {"data": profiles_payload([f"u{i}@example.com" for i in range(1001)])}},
        "relationships": {"list": {"data": {"type": "list", "id": list_id}}}}}
    problem = _problem(api.call("POST", "/api/profile-subscription-bulk-create-jobs", body), 400,
                       "bulk_subscribe_profiles")
    assert problem["source"]["pointer"] == "/data/attributes/profiles/data"
    assert "1,001" in problem["detail"] and "1,000" in problem["detail"]


@pytest.mark.parametrize("method", ["POST", "DELETE"])
def test_list_add_and_remove_over_1000_ids_are_refused(api: SandboxClient, method: str) -> None:
    list_id = api.create_list("caps")
    ids = {"data": [{"type": "profile", "id": f"01X{i}"} for i in range(1001)]}
    op = "add_profiles_to_list" if method == "POST" else "remove_profiles_from_list"
    problem = _problem(api.call(method, f"/api/lists/{list_id}/relationships/profiles", ids),
                       400, op)
    assert "1,000" in problem["detail"]


def test_bulk_import_caps_items_bytes_and_profile_size(api: SandboxClient) -> None:
    def job(profiles: list[dict[str, Any]]) -> requests.Response:
        return api.call("POST", "/api/profile-bulk-import-jobs", {"data": {
            "type": "profile-bulk-import-job", "attributes": {"profiles": {"data": profiles}}}})

    small = [{"type": "profile", "attributes": {"email": f"u{i}@example.com"}}
             for i in range(10_001)]
    assert "10,000" in _problem(job(small), 400, "bulk_import_profiles")["detail"]
    padded = [{"type": "profile", "attributes": {"email": f"u{i}@example.com",
                                                 "properties": {"pad": "x" * 60_000}}}
              for i in range(90)]
    assert "5,242,880" in _problem(job(padded), 400, "bulk_import_profiles")["detail"]
    huge = [*small[:3], {"type": "profile", "attributes": {"email": "big@example.com",
                                                           "properties": {"pad": "x" * 110_000}}}]
    problem = _problem(job(huge), 400, "bulk_import_profiles")
    assert problem["source"]["pointer"] == "/data/attributes/profiles/data/3"
    assert "102,400" in problem["detail"]
    too_big = _upsert(api, email="big@example.com", properties={"pad": "x" * 110_000})
    assert "102,400" in _problem(too_big, 400, "create_or_update_profile")["detail"]


PAGED = ["get_profiles", "get_lists", "get_profiles_for_list", "get_profile_ids_for_list"]


@pytest.mark.parametrize("op", PAGED)
def test_page_size_maxima_come_from_the_operation_table(api: SandboxClient, op: str) -> None:
    list_id = api.create_list("paged")
    path = BY_NAME[op].path.format(id=list_id)
    maximum = BY_NAME[op].max_items
    assert maximum is not None
    assert api.call("GET", path, **{"page[size]": maximum}).status_code == 200
    over = api.call("GET", path, **{"page[size]": maximum + 1})
    problem = _problem(over, 400, op)
    assert problem["source"] == {"parameter": "page[size]"}
    assert str(maximum) in problem["detail"]


# -- profiles ----------------------------------------------------------------------------


def test_profile_import_upserts_with_klaviyo_semantics(api: SandboxClient) -> None:
    created = _upsert(api, email="Ann@Example.com", first_name="Ann", last_name="Lee",
                      location={"city": "Oslo", "country": "NO"}, properties={"a": 1, "b": 2})
    assert created.status_code == 201
    pid = created.json()["data"]["id"]
    updated = _upsert(api, email="ann@example.com", first_name=None,
                      location={"city": "Bergen", "zip": None}, properties={"b": 3, "c": 4})
    assert updated.status_code == 200
    check_response(BY_NAME["create_or_update_profile"], 200, updated.json())
    attributes = updated.json()["data"]["attributes"]
    assert updated.json()["data"]["id"] == pid
    assert attributes["first_name"] is None  # null clears
    assert attributes["last_name"] == "Lee"  # omitted: unchanged
    assert attributes["email"] == "ann@example.com"
    assert attributes["location"]["city"] == "Bergen"
    assert attributes["location"]["country"] == "NO"
    assert attributes["properties"] == {"a": 1, "b": 3, "c": 4}


def test_profile_import_refuses_bad_identifiers(api: SandboxClient) -> None:
    bad_email = _problem(_upsert(api, email="ann@@example"), 400, "create_or_update_profile")
    assert bad_email["source"]["pointer"] == "/data/attributes/email"
    bad_phone = _problem(_upsert(api, phone_number="555-1234"), 400, "create_or_update_profile")
    assert bad_phone["source"]["pointer"] == "/data/attributes/phone_number"
    assert _upsert(api, first_name="Nobody").status_code == 400
    assert _upsert(api, phone_number="+15005550006", external_id="x-1").status_code == 201
    joined = _upsert(api, email="b@example.com", phone_number="+15005550006")
    assert joined.status_code == 200  # found by phone; the new email joins that profile
    assert _upsert(api, email="c@example.com").status_code == 201
    clash = _upsert(api, email="c@example.com", phone_number="+15005550006")
    assert _problem(clash, 409, "create_or_update_profile")["source"]["pointer"] == \
        "/data/attributes/phone_number"


def test_get_profiles_by_email_with_paging(api: SandboxClient) -> None:
    emails = [f"p{i}@example.com" for i in range(5)]
    for email in emails:
        assert _upsert(api, email=email).status_code == 201
    one = api.call("GET", "/api/profiles", filter='equals(email,"P3@example.com")').json()
    assert [p["attributes"]["email"] for p in one["data"]] == ["p3@example.com"]
    wanted = ",".join(f'"{e}"' for e in [*emails, "ghost@example.com"])
    url: str | None = f"{api.base_url}/api/profiles?filter=any(email,[{wanted}])&page[size]=2"
    seen: list[str] = []
    while url:
        page = api.call("GET", url)
        check_response(BY_NAME["get_profiles"], 200, page.json())
        seen += [p["attributes"]["email"] for p in page.json()["data"]]
        url = page.json()["links"].get("next")
        assert url is None or "page%5Bcursor%5D=" in url
    assert seen == emails
    bad = api.call("GET", "/api/profiles", filter="greater-than(email,'x')")
    assert _problem(bad, 400, "get_profiles")["source"] == {"parameter": "filter"}


# -- lists -------------------------------------------------------------------------------


def _walk(api: SandboxClient, path: str, **params: Any) -> list[dict[str, Any]]:
    """Follow links.next from the first page to the last."""
    out: list[dict[str, Any]] = []
    resp = api.call("GET", path, **params)
    while True:
        assert resp.status_code == 200, resp.text
        out += resp.json()["data"]
        following = resp.json()["links"].get("next")
        if not following:
            return out
        assert following.startswith(api.base_url) and "page%5Bcursor%5D" in following
        resp = api.call("GET", following)


def test_lists_find_by_name_and_page_members_with_cursors(api: SandboxClient) -> None:
    list_id = api.create_list("Pager")
    api.create_list("Other")
    found = api.call("GET", "/api/lists", filter='equals(name,"Pager")').json()["data"]
    assert [x["id"] for x in found] == [list_id]
    assert found[0]["attributes"]["opt_in_process"] == "single_opt_in"
    job = api.wait_subscribe(api.subscribe(list_id, [f"m{i}@example.com" for i in range(25)]))
    assert job["completed_count"] == 25
    members = _walk(api, f"/api/lists/{list_id}/profiles", **{"page[size]": 10})
    assert [m["attributes"]["email"] for m in members] == [f"m{i}@example.com" for i in range(25)]
    assert all("joined_group_at" in m["attributes"] for m in members)
    ids = _walk(api, f"/api/lists/{list_id}/relationships/profiles", **{"page[size]": 7})
    assert [i["id"] for i in ids] == [m["id"] for m in members]
    newest = _walk(api, f"/api/lists/{list_id}/relationships/profiles",
                   sort="-joined_group_at", **{"page[size]": 10})
    assert [i["id"] for i in newest] == [m["id"] for m in reversed(members)]
    counted = api.call("GET", f"/api/lists/{list_id}",
                       **{"additional-fields[list]": "profile_count"}).json()
    assert counted["data"]["attributes"]["profile_count"] == 25


def test_force_add_and_remove_take_profile_ids(api: SandboxClient) -> None:
    list_id = api.create_list("Force")
    pids = [_upsert(api, email=f"f{i}@example.com").json()["data"]["id"] for i in range(3)]
    body = {"data": [{"type": "profile", "id": p} for p in pids]}
    assert api.call("POST", f"/api/lists/{list_id}/relationships/profiles", body).status_code == 204
    assert sorted(api.list_emails(list_id)) == [f"f{i}@example.com" for i in range(3)]
    one = {"data": [{"type": "profile", "id": pids[1]}]}
    assert api.call("DELETE", f"/api/lists/{list_id}/relationships/profiles", one).status_code \
        == 204
    assert sorted(api.list_emails(list_id)) == ["f0@example.com", "f2@example.com"]
    ghost = {"data": [{"type": "profile", "id": pids[0]}, {"type": "profile", "id": "01NOPE"}]}
    resp = api.call("POST", f"/api/lists/{list_id}/relationships/profiles", ghost)
    assert _problem(resp, 400, "add_profiles_to_list")["source"]["pointer"] == "/data/1/id"
    profile = api.call("GET", "/api/profiles", filter=f'equals(id,"{pids[0]}")',
                       **{"additional-fields[profile]": "subscriptions"}).json()["data"][0]
    marketing = profile["attributes"]["subscriptions"]["email"]["marketing"]
    assert marketing["consent"] == "NEVER_SUBSCRIBED"  # force add gives no consent
    assert api.call("GET", "/api/lists/nope00/profiles").status_code == 404


# -- asynchronous jobs -------------------------------------------------------------------


def test_subscribe_job_is_asynchronous_and_fails_bad_profiles_alone(api: SandboxClient) -> None:
    list_id = api.create_list("Subs")
    good = [f"s{i}@example.com" for i in range(4)]
    profiles = [*profiles_payload(good), *profiles_payload(["broken@", "also broken"]),
                {"type": "profile", "attributes": {
                    "phone_number": "5551234", "subscriptions": {"sms": {"marketing": {
                        "consent": "SUBSCRIBED"}}}}},
                {"type": "profile", "attributes": {
                    "email": "sms@example.com", "phone_number": "+15005550006",
                    "subscriptions": {"sms": {"marketing": {"consent": "SUBSCRIBED"}}}}}]
    job_id = api.subscribe(list_id, [], profiles=profiles)
    early = api.admin("GET", f"subscribe-jobs/{job_id}")
    assert early["status"] in ("queued", "processing")
    job = api.wait_subscribe(job_id)
    assert job["status"] == "complete"
    assert (job["total_count"], job["completed_count"], job["failed_count"]) == (8, 5, 3)
    pointers = sorted(f["pointer"] for f in job["failures"])
    assert pointers == ["/data/attributes/profiles/data/4/attributes/email",
                        "/data/attributes/profiles/data/5/attributes/email",
                        "/data/attributes/profiles/data/6/attributes/phone_number"]
    assert sorted(api.list_emails(list_id)) == sorted([*good, "sms@example.com"])
    found = api.call("GET", "/api/profiles", filter='equals(email,"s1@example.com")',
                     **{"additional-fields[profile]": "subscriptions"}).json()["data"][0]
    assert found["attributes"]["subscriptions"]["email"]["marketing"]["consent"] == "SUBSCRIBED"
    sms = api.call("GET", "/api/profiles", filter='equals(phone_number,"+15005550006")',
                   **{"additional-fields[profile]": "subscriptions"}).json()["data"][0]
    assert sms["attributes"]["subscriptions"]["sms"]["marketing"]["consent"] == "SUBSCRIBED"


def test_subscribe_reuses_existing_profiles_case_insensitively(api: SandboxClient) -> None:
    list_id = api.create_list("Reuse")
    pid = _upsert(api, email="Known@Example.com").json()["data"]["id"]
    api.wait_subscribe(api.subscribe(list_id, ["known@example.COM"]))
    ids = api.call("GET", f"/api/lists/{list_id}/relationships/profiles").json()["data"]
    assert [i["id"] for i in ids] == [pid]


def test_double_opt_in_stays_pending_until_confirmed(api: SandboxClient) -> None:
    list_id = api.create_list("DOI", opt_in="double_opt_in")
    api.wait_subscribe(api.subscribe(list_id, ["d1@example.com", "d2@example.com"]))
    state = api.admin("GET", f"lists/{list_id}/emails")
    assert state["emails"] == [] and sorted(state["pending"]) == ["d1@example.com",
                                                                  "d2@example.com"]
    assert api.call("GET", f"/api/lists/{list_id}/profiles").json()["data"] == []
    assert api.admin("POST", "confirm", {"list_id": list_id, "emails": ["D1@example.com"]}) == \
        {"confirmed": 1}
    assert api.list_emails(list_id) == ["d1@example.com"]
    profile = api.call("GET", f"/api/lists/{list_id}/profiles",
                       **{"additional-fields[profile]": "subscriptions"}).json()["data"][0]
    marketing = profile["attributes"]["subscriptions"]["email"]["marketing"]
    assert (marketing["consent"], marketing["double_optin"]) == ("SUBSCRIBED", True)
    assert api.admin("POST", "confirm", {"list_id": list_id}) == {"confirmed": 1}
    assert sorted(api.list_emails(list_id)) == ["d1@example.com", "d2@example.com"]


def test_recent_joiners_are_filtered_and_sorted_by_joined_group_at(api: SandboxClient) -> None:
    """``get_profiles_for_list`` filters ``joined_group_at`` with greater-/less-than(-or-equal)
    and sorts by it (spec: the operation's ``filter`` and ``sort`` parameters): the way to
    find who confirmed a double opt-in since a moment, one call per page."""
    # given a double opt-in list where two people confirmed, then three more
    list_id = api.create_list("Joiners", opt_in="double_opt_in")
    emails = [f"j{i}@example.com" for i in range(5)]
    api.wait_subscribe(api.subscribe(list_id, emails))
    api.admin("POST", "confirm", {"list_id": list_id, "emails": emails[:2]})
    first = _walk(api, f"/api/lists/{list_id}/profiles", sort="joined_group_at")
    mark = max(m["attributes"]["joined_group_at"] for m in first)
    api.admin("POST", "confirm", {"list_id": list_id, "emails": emails[2:]})
    path = f"/api/lists/{list_id}/profiles"
    # when reading the joiners after the mark, two a page
    later = _walk(api, path, filter=f"greater-than(joined_group_at,{mark})",
                  sort="joined_group_at", **{"page[size]": 2})
    # then only the three later ones come, oldest first, over two pages
    assert [m["attributes"]["email"] for m in later] == emails[2:]
    joined = [m["attributes"]["joined_group_at"] for m in later]
    assert joined == sorted(joined) and min(joined) > mark
    since = _walk(api, path, filter=f"greater-or-equal(joined_group_at,{mark})")
    assert len(since) == 5  # the first two were confirmed in one step: they joined at the mark
    before = _walk(api, path, filter=f"less-or-equal(joined_group_at,{mark})")
    assert len(before) == 2
    both = _walk(api, path, filter=f"and(greater-than(joined_group_at,2000-01-01T00:00:00Z),"
                                   f"less-than(joined_group_at,{mark}))")
    assert both == []
    combined = _walk(api, path, filter=f'and(equals(email,"{emails[4]}"),'
                                       f"greater-than(joined_group_at,{mark}))")
    assert [m["attributes"]["email"] for m in combined] == [emails[4]]
    # and equality on a time, or a value that is no date, is a 400 naming the filter
    wrong = api.call("GET", path, filter=f"equals(joined_group_at,{mark})")
    assert _problem(wrong, 400, "get_profiles_for_list")["source"] == {"parameter": "filter"}
    garbled = api.call("GET", path, filter="greater-than(joined_group_at,2024-13-45T99:00:00Z)")
    assert _problem(garbled, 400, "get_profiles_for_list")["source"] == {"parameter": "filter"}


def test_historical_import_skips_double_opt_in_but_needs_consented_at(
        api: SandboxClient) -> None:
    list_id = api.create_list("Hist", opt_in="double_opt_in")
    past = {"email": {"marketing": {"consent": "SUBSCRIBED",
                                    "consented_at": "2024-01-01T00:00:00Z"}}}
    profiles = [{"type": "profile", "attributes": {"email": "h@example.com",
                                                   "subscriptions": past}}]
    api.wait_subscribe(api.subscribe(list_id, [], profiles=profiles, historical_import=True))
    assert api.list_emails(list_id) == ["h@example.com"]
    body = {"data": {"type": "profile-subscription-bulk-create-job", "attributes": {
        "historical_import": True, "profiles": {"data": profiles_payload(["n@example.com"])}},
        "relationships": {"list": {"data": {"type": "list", "id": list_id}}}}}
    problem = _problem(api.call("POST", "/api/profile-subscription-bulk-create-jobs", body), 400,
                       "bulk_subscribe_profiles")
    assert problem["source"]["pointer"].endswith("/0/attributes/subscriptions/email/marketing/"
                                                 "consented_at")


def test_bulk_import_upserts_force_adds_and_reports_errors(api: SandboxClient) -> None:
    list_id = api.create_list("Import")
    profiles = [{"type": "profile", "attributes": {"email": f"i{i}@example.com",
                                                   "first_name": f"I{i}"}} for i in range(3)]
    profiles.append({"type": "profile", "attributes": {"email": "i-bad@"}})
    profiles.append({"type": "profile", "attributes": {"phone_number": "12345"}})
    job_id = api.bulk_import(profiles, (list_id,))
    done = api.wait_import(job_id)
    assert (done["total_count"], done["completed_count"], done["failed_count"]) == (5, 3, 2)
    errors = api.call("GET", f"/api/profile-bulk-import-jobs/{job_id}/import-errors").json()
    check_response(BY_NAME["get_errors_for_bulk_import_profiles_job"], 200, errors)
    assert [e["attributes"]["source"]["pointer"] for e in errors["data"]] == [
        "/data/attributes/profiles/data/3/attributes/email",
        "/data/attributes/profiles/data/4/attributes/phone_number"]
    assert sorted(api.list_emails(list_id)) == [f"i{i}@example.com" for i in range(3)]
    ids = api.call("GET", f"/api/profile-bulk-import-jobs/{job_id}/relationships/profiles")
    assert len(ids.json()["data"]) == 3
    job = api.call("GET", f"/api/profile-bulk-import-jobs/{job_id}", include="lists").json()
    check_response(BY_NAME["get_bulk_import_profiles_job"], 200, job)
    assert job["included"][0]["id"] == list_id
    missing_list = api.call("POST", "/api/profile-bulk-import-jobs", {"data": {
        "type": "profile-bulk-import-job", "attributes": {"profiles": {"data": profiles[:1]}},
        "relationships": {"lists": {"data": [{"type": "list", "id": "nope00"}]}}}})
    assert _problem(missing_list, 404, "bulk_import_profiles")["source"]["pointer"] == \
        "/data/relationships/lists/data/0/id"


# -- admin -------------------------------------------------------------------------------


def test_stats_count_calls_items_and_statuses_per_operation_and_account(
        server: SandboxServer) -> None:
    key = f"pk_stats_{uuid.uuid4().hex}"
    api = SandboxClient(server.url, key)
    list_id = api.create_list("Stats")
    api.wait_subscribe(api.subscribe(list_id, ["x@example.com", "y@example.com"]))
    api.call("GET", "/api/lists/nope00")
    fingerprint = hashlib.sha256(key.encode()).hexdigest()[:12]
    mine = api.admin("GET", "stats")["accounts"][fingerprint]["operations"]
    assert mine["create_list"]["calls"] == 1
    assert mine["bulk_subscribe_profiles"] == {"calls": 1, "items": 2, "throttled": 0,
                                               "statuses": {"202": 1}}
    assert mine["get_list"]["statuses"] == {"404": 1}


def test_reset_forgets_everything() -> None:
    with running_sandbox(port=free_port(), profile="fast") as sb:
        api = SandboxClient(sb.url, "pk_reset")
        list_id = api.create_list("Gone")
        api.admin("POST", "reset")
        assert api.call("GET", f"/api/lists/{list_id}").status_code == 404
        assert api.admin("GET", "stats")["operations"] == {"get_list": {
            "calls": 1, "items": 0, "throttled": 0, "statuses": {"404": 1}}}
