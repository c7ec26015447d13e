"""The account behind a key: a cheap health check (burst 1/s, steady 15/m)."""

from __future__ import annotations

from contract import operations as ops
from worker.klaviyo.client import KlaviyoClient
from worker.klaviyo.errors import AuthError


def check_account(client: KlaviyoClient) -> str:
    """The Klaviyo account id the key belongs to; AuthError if the key is refused."""
    response = client.call(ops.GET_ACCOUNTS)
    data = (response.document or {}).get("data")
    if not isinstance(data, list) or not data or not isinstance(data[0], dict):
        raise AuthError(f"{ops.GET_ACCOUNTS.name}: the key sees no account", response.status)
    return str(data[0]["id"])
