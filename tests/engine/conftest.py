"""Fixtures for end-to-end engine tests: a sandbox on loopback and a stack of real workers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core.settings import load_settings
from sandbox.server import SandboxServer
from tests.conftest import RedisServer
from tests.harness import Stack


@pytest.fixture
def sandbox_server() -> Iterator[SandboxServer]:
    """A sandbox at Klaviyo's real limits, its async jobs finishing in 0.1 s."""
    server = SandboxServer(speed=1.0, profile="fast", job_delay=0.1).start()
    yield server
    server.stop()


@pytest.fixture
def stack(
    redis_server: RedisServer, redis_url: str, sandbox_server: SandboxServer, tmp_path: Path
) -> Iterator[Stack]:
    """Workers, the sandbox and Redis wired together; every worker is stopped afterwards."""
    s = Stack(redis_url=redis_url, sandbox_url=sandbox_server.url, workdir=tmp_path)
    yield s
    s.stop_all()


@pytest.fixture
def slow_sandbox(request: pytest.FixtureRequest) -> Iterator[SandboxServer]:
    """A sandbox whose asynchronous jobs take ``request.param`` seconds (6 unless parametrized
    with ``indirect=True``): Klaviyo under load, when no fixed settle time is enough."""
    server = SandboxServer(speed=1.0, profile="fast",
                           job_delay=float(getattr(request, "param", 6.0))).start()
    yield server
    server.stop()


@pytest.fixture
def slow_stack(
    redis_server: RedisServer, redis_url: str, slow_sandbox: SandboxServer, tmp_path: Path
) -> Iterator[Stack]:
    """``stack`` against ``slow_sandbox``."""
    s = Stack(redis_url=redis_url, sandbox_url=slow_sandbox.url, workdir=tmp_path)
    yield s
    s.stop_all()


Configure = Callable[[Stack], None]


@pytest.fixture
def configure(monkeypatch: pytest.MonkeyPatch) -> Iterator[Configure]:
    """Point this process's settings (what the CLI reads) at a stack, restored afterwards."""

    def apply(target: Stack) -> None:
        for name, value in target.env().items():
            monkeypatch.setenv(name, value)
        load_settings.cache_clear()

    yield apply
    load_settings.cache_clear()
