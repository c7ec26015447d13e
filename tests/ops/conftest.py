"""Fixtures for the operational tests: the engine's sandbox and stack, plus a configured CLI."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from core.settings import load_settings
from tests.engine.conftest import sandbox_server, stack  # noqa: F401 - fixtures reused as is
from tests.harness import Stack

JOB = {"id": "vip", "audiences": ["vip_buyers"], "new_list_name": "VIP"}


@pytest.fixture
def configure(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Stack], None]]:
    """Point this process's settings at a stack (what the CLI reads), restored afterwards."""

    def apply(target: Stack) -> None:
        for name, value in target.env().items():
            monkeypatch.setenv(name, value)
        load_settings.cache_clear()

    yield apply
    load_settings.cache_clear()
