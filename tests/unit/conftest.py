"""Fixtures for the Klaviyo unit tests: a mocked HTTP transport and a client aimed at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import responses

from tests.unit.klaviyo_fakes import fake_client
from worker.klaviyo.client import KlaviyoClient


@pytest.fixture
def all_requests_fired() -> bool:
    """Whether ``rsps`` fails a test that leaves a registered response unused.

    Off by default; a module that wants the stricter check overrides this fixture.
    """
    return False


@pytest.fixture(name="rsps")
def _rsps(all_requests_fired: bool) -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=all_requests_fired) as mock:
        yield mock


@pytest.fixture(name="client")
def _client() -> KlaviyoClient:
    return fake_client()
