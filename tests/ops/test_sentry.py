"""Sentry events arrive, but without API keys, tokens or readable emails anywhere in them."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk
from pydantic import SecretStr
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from core.settings import Settings
from worker.ops import observability

KEY = "pk_live_abcdef0123456789"
TOKEN = "tok-Zq81xLmN5pRt"
LYTICS = "lytics-secret-77AbCdEf"
EMAIL = "ann.smith@example.com"


class Captured(Transport):
    """A transport that keeps envelopes in memory: nothing leaves the process."""

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        self.envelopes.append(envelope)


@pytest.fixture
def captured() -> Iterator[Captured]:
    transport = Captured()
    settings = Settings(webhook_token=SecretStr(TOKEN), lytics_api_token=SecretStr(LYTICS))
    assert observability.init_sentry(settings, transport=transport)
    yield transport
    sentry_sdk.get_client().close()
    sentry_sdk.init()  # a disabled client again


def fail_with_secrets(email: str, api_key: str) -> None:
    headers = {"Authorization": f"Klaviyo-API-Key {api_key}", "X-Api-Key": api_key}
    token = TOKEN
    raise RuntimeError(f"import failed for {email} with {api_key} ({token}, {LYTICS}) {headers}")


def test_no_key_token_or_email_reaches_sentry_but_the_event_does(captured: Captured) -> None:
    logging.getLogger("worker.test").warning("about to call for %s", EMAIL)  # a breadcrumb
    sentry_sdk.set_extra("profile", {"email": EMAIL, "api_key": KEY, "note": f"key {KEY}"})
    sentry_sdk.set_context("request", {"headers": {"authorization": f"Bearer {TOKEN}"}})
    try:
        fail_with_secrets(EMAIL, KEY)
    except RuntimeError:
        sentry_sdk.capture_exception()
    sentry_sdk.flush()
    assert captured.envelopes, "the event must still arrive"
    raw = b"".join(e.serialize() for e in captured.envelopes).decode()
    for secret in (KEY, TOKEN, LYTICS, EMAIL, "abcdef0123456789"):
        assert secret not in raw
    assert "RuntimeError" in raw and "a***@example.com" in raw
    assert "fail_with_secrets" in raw  # the stack trace (and its variables) survived, scrubbed


def test_scrub_event_walks_nested_structures() -> None:
    event = {"exception": {"values": [{"value": f"x {KEY}", "stacktrace": {"frames": [
        {"vars": {"key": KEY, "emails": [EMAIL], "pair": (EMAIL, 1)}}]}}]},
        "request": {"headers": {"X-Api-Key": "anything"}, "data": {"token": "t"}}}
    out = observability.scrub_event(event)
    assert KEY not in str(out) and EMAIL not in str(out)
    assert out["request"]["headers"]["X-Api-Key"] == observability.FILTERED
    assert out["request"]["data"]["token"] == observability.FILTERED


def test_sentry_stays_off_without_a_dsn() -> None:
    assert observability.init_sentry(Settings()) is False
