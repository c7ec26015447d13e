"""Shared fakes for the Klaviyo unit tests: the fake base URL, a client, request bodies."""

from __future__ import annotations

from typing import Any

import orjson
import responses

from worker.klaviyo.client import KlaviyoClient

BASE = "http://127.0.0.1:9"
REVISION = "2026-07-15"


def fake_client(api_key: str = "pk_test") -> KlaviyoClient:
    """A client for ``api_key`` that talks to :data:`BASE` (answered by ``responses``)."""
    return KlaviyoClient(api_key, base_url=BASE, revision=REVISION)


def sent(rsps: responses.RequestsMock, index: int = 0) -> dict[str, Any]:
    """The JSON body of recorded request ``index`` (the first by default)."""
    body: dict[str, Any] = orjson.loads(rsps.calls[index].request.body or b"")
    return body
