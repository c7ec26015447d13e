"""Conformance: Klaviyo's official SDK, driven as a new user would, against the default
(realistic) sandbox sees what a real account shows.

Create a list without naming the opt-in process (so: double opt-in), subscribe, read the
list (empty until the person confirms), confirm (the admin route plays their click), read
it again, read a profile's subscriptions, bulk-unsubscribe, and filter profiles by
suppression. Each answer is parsed by the SDK's models and validated against the bundled
OpenAPI document. Only the job delay is shortened; everything else is the realistic default.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from klaviyo_api import KlaviyoAPI

from sandbox.extra_operations import SERVED_BY_NAME
from sandbox.server import SandboxServer, running_sandbox
from sandbox.validation import check_response
from tests.conftest import free_port, wait_until

SUBSCRIBED = {"email": {"marketing": {"consent": "SUBSCRIBED"}}}
UNSUBSCRIBED = {"email": {"marketing": {"consent": "UNSUBSCRIBED"}}}


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with running_sandbox(port=free_port(), job_delay="uniform:0.05,0.3") as sb:
        yield sb


def call(op_name: str, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """One SDK call; its raw answer must validate against the spec."""
    response = method(*args, **kwargs)
    document = orjson.loads(response.raw_data) if response.raw_data else None
    check_response(SERVED_BY_NAME[op_name], response.status_code, document)
    return response


def test_a_new_user_on_a_real_account(server: SandboxServer) -> None:
    sdk = KlaviyoAPI("pk_sdk_realistic", max_delay=1, max_retries=0, test_host=server.url)
    lists, profiles = sdk.Lists, sdk.Profiles

    created = call("create_list", lists.create_list_with_http_info,
                   {"data": {"type": "list", "attributes": {"name": "Newsletter"}}})
    list_id = created.data.data.id
    assert created.data.data.attributes.opt_in_process == "double_opt_in"

    call("bulk_subscribe_profiles", profiles.bulk_subscribe_profiles_with_http_info, {"data": {
        "type": "profile-subscription-bulk-create-job",
        "attributes": {"profiles": {"data": [
            {"type": "profile", "attributes": {"email": e, "subscriptions": SUBSCRIBED}}
            for e in ("ann@example.com", "bob@example.com")]}},
        "relationships": {"list": {"data": {"type": "list", "id": list_id}}}}})

    def lookup(email: str) -> Any:
        found = call("get_profiles", profiles.get_profiles_with_http_info,
                     filter=f'equals(email,"{email}")', additional_fields_profile=["subscriptions"])
        return found.data.data[0] if found.data.data else None

    def members() -> list[str]:
        page = call("get_profiles_for_list", lists.get_profiles_for_list_with_http_info, list_id)
        return [p.attributes.email for p in page.data.data]

    ann = wait_until(lambda: lookup("ann@example.com"), 10, message="the subscribe job")
    assert ann.attributes.subscriptions.email.marketing.consent == "NEVER_SUBSCRIBED"
    assert members() == []  # pending: the confirmation message is unanswered

    server.confirm(list_id, ["ann@example.com"])  # Ann clicks the link in her inbox
    assert members() == ["ann@example.com"]
    consent = lookup("ann@example.com").attributes.subscriptions.email.marketing
    assert (consent.consent, consent.double_optin, consent.can_receive_email_marketing) == (
        "SUBSCRIBED", True, True)

    call("bulk_unsubscribe_profiles", profiles.bulk_unsubscribe_profiles_with_http_info, {"data": {
        "type": "profile-subscription-bulk-delete-job",
        "attributes": {"profiles": {"data": [
            {"type": "profile", "attributes": {"email": e, "subscriptions": UNSUBSCRIBED}}
            for e in ("ann@example.com", "bob@example.com")]}},
        "relationships": {"list": {"data": {"type": "list", "id": list_id}}}}})

    def globally_unsubscribed() -> bool:
        marketing = lookup("bob@example.com").attributes.subscriptions.email.marketing
        return bool(marketing.consent == "UNSUBSCRIBED")

    wait_until(globally_unsubscribed, 10, message="the unsubscribe job")
    # Bob never confirmed, so he was not on the list: Klaviyo unsubscribes him globally
    bob = lookup("bob@example.com").attributes.subscriptions.email.marketing
    assert [s.reason for s in bob.suppression] == ["UNSUBSCRIBE"]
    assert bob.can_receive_email_marketing is False
    # Ann was on it: she leaves the list and keeps her consent
    ann_now = lookup("ann@example.com").attributes.subscriptions.email.marketing
    assert [s.list_id for s in ann_now.list_suppressions] == [list_id]
    assert ann_now.can_receive_email_marketing is True
    assert members() == []

    suppressed = call("get_profiles", profiles.get_profiles_with_http_info,
                      filter='equals(subscriptions.email.marketing.suppression.reason,'
                             '"UNSUBSCRIBE")')
    assert [p.attributes.email for p in suppressed.data.data] == ["bob@example.com"]
    left_list = call("get_profiles", profiles.get_profiles_with_http_info,
                     filter=f'equals(subscriptions.email.marketing.list_suppressions.list_id,'
                            f'"{list_id}")')
    assert [p.attributes.email for p in left_list.data.data] == ["ann@example.com"]
