"""Conformance: Klaviyo's official SDK (klaviyo-api 25.0.0) drives every operation.

Each call goes through the SDK's ``*_with_http_info`` method (no retries), so the
SDK's own pydantic models must parse every answer, and the raw body must validate
against the bundled OpenAPI document (``contract.spec.validate_response``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from klaviyo_api import KlaviyoAPI
from openapi_client.exceptions import ApiException

from contract.operations import ALL, BY_NAME
from sandbox.server import SandboxServer, running_sandbox
from sandbox.validation import check_response
from tests.conftest import free_port

SUBSCRIBED = {"email": {"marketing": {"consent": "SUBSCRIBED"}}}


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with running_sandbox(port=free_port(), profile="fast", job_delay=0.05) as sb:
        yield sb


@pytest.fixture
def sdk(server: SandboxServer) -> KlaviyoAPI:
    return KlaviyoAPI(f"pk_sdk_{time.monotonic_ns()}", max_delay=1, max_retries=0,
                      test_host=server.url)


class Checked:
    """Calls SDK methods and checks each answer against the SDK model and the spec."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def __call__(self, op_name: str, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        response = method(*args, **kwargs)
        document = orjson.loads(response.raw_data) if response.raw_data else None
        check_response(BY_NAME[op_name], response.status_code, document)
        if document is not None:
            assert response.data is not None and hasattr(response.data, "data"), op_name
        self.seen.add(op_name)
        return response


def _profiles(emails: list[str]) -> dict[str, Any]:
    return {"data": [{"type": "profile", "attributes": {"email": e, "subscriptions": SUBSCRIBED}}
                     for e in emails]}


def test_every_operation_through_the_sdk(sdk: KlaviyoAPI) -> None:
    call = Checked()
    lists, profiles = sdk.Lists, sdk.Profiles
    accounts = call("get_accounts", sdk.Accounts.get_accounts_with_http_info)
    assert accounts.data.data[0].type == "account"

    created = call("create_list", lists.create_list_with_http_info, {"data": {
        "type": "list", "attributes": {"name": "SDK list", "opt_in_process": "double_opt_in"}}})
    assert created.status_code == 201
    list_id = created.data.data.id
    found = call("get_lists", lists.get_lists_with_http_info, filter='equals(name,"SDK list")')
    assert [x.id for x in found.data.data] == [list_id]
    one = call("get_list", lists.get_list_with_http_info, list_id,
               additional_fields_list=["profile_count"])
    assert one.data.data.attributes.opt_in_process == "double_opt_in"
    flows = call("get_flows_triggered_by_list", lists.get_flows_triggered_by_list_with_http_info,
                 list_id)
    assert flows.data.data == []

    upsert = {"data": {"type": "profile", "attributes": {"email": "Ann@Example.com",
                                                         "properties": {"tier": "gold"}}}}
    first = call("create_or_update_profile", profiles.create_or_update_profile_with_http_info,
                 upsert)
    again = call("create_or_update_profile", profiles.create_or_update_profile_with_http_info,
                 upsert)
    assert (first.status_code, again.status_code) == (201, 200)
    pid = first.data.data.id
    looked = call("get_profiles", profiles.get_profiles_with_http_info,
                  filter='any(email,["ann@example.com","nobody@example.com"])',
                  additional_fields_profile=["subscriptions"])
    assert [p.id for p in looked.data.data] == [pid]

    ids = {"data": [{"type": "profile", "id": pid}]}
    assert call("add_profiles_to_list", lists.add_profiles_to_list_with_http_info,
                list_id, ids).status_code == 204
    members = call("get_profiles_for_list", lists.get_profiles_for_list_with_http_info, list_id)
    assert [m.id for m in members.data.data] == [pid]
    rel = call("get_profile_ids_for_list", lists.get_profile_ids_for_list_with_http_info, list_id)
    assert [m.id for m in rel.data.data] == [pid]
    assert call("remove_profiles_from_list", lists.remove_profiles_from_list_with_http_info,
                list_id, ids).status_code == 204

    job = {"data": {"type": "profile-subscription-bulk-create-job",
                    "attributes": {"profiles": _profiles(["sub@example.com"])},
                    "relationships": {"list": {"data": {"type": "list", "id": list_id}}}}}
    assert call("bulk_subscribe_profiles", profiles.bulk_subscribe_profiles_with_http_info,
                job).status_code == 202

    bulk = {"data": {"type": "profile-bulk-import-job", "attributes": {"profiles": {"data": [
        {"type": "profile", "attributes": {"email": "imp@example.com", "first_name": "Imp"}},
        {"type": "profile", "attributes": {"email": "not-an-email"}}]}},
        "relationships": {"lists": {"data": [{"type": "list", "id": list_id}]}}}}
    accepted = call("bulk_import_profiles", profiles.bulk_import_profiles_with_http_info, bulk)
    assert accepted.status_code == 202
    job_id = accepted.data.data.id
    status = ""
    for _ in range(50):
        polled = call("get_bulk_import_profiles_job",
                      profiles.get_bulk_import_profiles_job_with_http_info, job_id)
        status = polled.data.data.attributes.status
        if status == "complete":
            break
        time.sleep(0.11)  # 10/s burst on this operation
    assert status == "complete"
    assert (polled.data.data.attributes.completed_count,
            polled.data.data.attributes.failed_count) == (1, 1)
    errors = call("get_errors_for_bulk_import_profiles_job",
                  profiles.get_errors_for_bulk_import_profiles_job_with_http_info, job_id)
    assert errors.data.data[0].attributes.source.pointer.endswith("/1/attributes/email")
    written = call("get_profiles_for_bulk_import_profiles_job",
                   profiles.get_profiles_for_bulk_import_profiles_job_with_http_info, job_id)
    assert [p.attributes.email for p in written.data.data] == ["imp@example.com"]
    call("get_profile_ids_for_bulk_import_profiles_job",
         profiles.get_profile_ids_for_bulk_import_profiles_job_with_http_info, job_id)
    done = call("get_bulk_import_profiles_jobs",
                profiles.get_bulk_import_profiles_jobs_with_http_info,
                filter="equals(status,'complete')")
    assert [j.id for j in done.data.data] == [job_id]
    running = call("get_bulk_import_profiles_jobs",
                   profiles.get_bulk_import_profiles_jobs_with_http_info,
                   filter='any(status,["queued","processing"])')
    assert running.data.data == []

    assert call.seen == {op.name for op in ALL}


def test_sdk_errors_are_klaviyo_shaped(sdk: KlaviyoAPI, server: SandboxServer) -> None:
    with pytest.raises(ApiException) as missing:
        sdk.Lists.get_list_with_http_info("nope42")
    assert missing.value.status == 404
    check_response(BY_NAME["get_list"], 404, orjson.loads(missing.value.body))

    bad = KlaviyoAPI("not-a-key", max_delay=1, max_retries=0, test_host=server.url)
    with pytest.raises(ApiException) as denied:
        bad.Lists.get_lists_with_http_info()
    assert denied.value.status == 401
    body = orjson.loads(denied.value.body)
    check_response(BY_NAME["get_lists"], 401, body)
    assert body["errors"][0]["code"] == "not_authenticated"

