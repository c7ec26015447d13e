"""The account check: which account a key belongs to, or an AuthError."""

from __future__ import annotations

from typing import Any

import pytest
import responses

from contract import operations as ops
from contract.spec import validate_response
from tests.unit.klaviyo_fakes import BASE
from worker.klaviyo.accounts import check_account
from worker.klaviyo.client import KlaviyoClient
from worker.klaviyo.errors import AuthError

ACCOUNTS = f"{BASE}/api/accounts"


@pytest.fixture
def all_requests_fired() -> bool:
    """Every registered response must be used."""
    return True


def account(account_id: str) -> dict[str, Any]:
    """An ``account`` resource object as Klaviyo returns it."""
    return {"type": "account", "id": account_id, "links": {"self": f"{ACCOUNTS}/{account_id}"},
            "attributes": {
                "test_account": False, "timezone": "UTC", "preferred_currency": "USD",
                "public_api_key": "AbC123", "locale": "en-US",
                "contact_information": {"default_sender_name": "Shop",
                                        "default_sender_email": "shop@example.com",
                                        "organization_name": "Shop", "street_address": {}},
            }}


def test_returns_the_account_id(client: KlaviyoClient, rsps: responses.RequestsMock) -> None:
    """A valid key yields its account id."""
    document = {"data": [account("ACC1")], "links": {"self": ACCOUNTS}}
    validate_response(ops.GET_ACCOUNTS, 200, document)
    rsps.get(ACCOUNTS, json=document)

    assert check_account(client) == "ACC1"


def test_no_account_is_an_auth_error(client: KlaviyoClient, rsps: responses.RequestsMock) -> None:
    """A key that sees no account is treated as a bad key."""
    rsps.get(ACCOUNTS, json={"data": [], "links": {"self": ACCOUNTS}})

    with pytest.raises(AuthError, match="sees no account"):
        check_account(client)


def test_refused_key(client: KlaviyoClient, rsps: responses.RequestsMock) -> None:
    """A 401 is an AuthError."""
    rsps.get(ACCOUNTS, status=401, json={"errors": [{"id": "e", "code": "not_authenticated",
                                                     "title": "Not authenticated", "detail": "x"}]})

    with pytest.raises(AuthError, match="HTTP 401"):
        check_account(client)
