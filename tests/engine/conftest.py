"""Fixtures for end-to-end engine tests: a sandbox on loopback and a stack of real workers.

The sandbox runs its realistic profile (double opt-in lists by default, a random window
phase per account, per-call latency, a foreign client using 10 % of every window, 409s,
whole-job 400s, suppressions) at Klaviyo's real limits. Only the asynchronous job delay is
shortened: ``SUITE_JOB_DELAY`` ("short", the realistic distribution's shape with a 0.4 s
median instead of 3 s; docs/sandbox.md says why). Jobs that expect people on the list at once ask
for ``new_list_opt_in = "single"``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core.settings import load_settings
from sandbox.server import SandboxServer
from tests.conftest import RedisServer
from tests.harness import Stack

SUITE_JOB_DELAY = "short"  # lognormal:0.4,1,8 (sandbox.realism.NAMED_DELAYS)


def _sandbox(job_delay: float | str) -> Iterator[SandboxServer]:
    server = SandboxServer(speed=1.0, job_delay=job_delay).start()
    yield server
    server.stop()


def _stack(redis_url: str, sandbox: SandboxServer, workdir: Path) -> Iterator[Stack]:
    s = Stack(redis_url=redis_url, sandbox_url=sandbox.url, workdir=workdir)
    yield s
    s.stop_all()


@pytest.fixture
def sandbox_server() -> Iterator[SandboxServer]:
    """A realistic sandbox at Klaviyo's real limits, its async jobs taking ``SUITE_JOB_DELAY``."""
    yield from _sandbox(SUITE_JOB_DELAY)


@pytest.fixture
def stack(
    redis_server: RedisServer, redis_url: str, sandbox_server: SandboxServer, tmp_path: Path
) -> Iterator[Stack]:
    """Workers, the sandbox and Redis wired together; every worker is stopped afterwards."""
    yield from _stack(redis_url, sandbox_server, tmp_path)


@pytest.fixture
def slow_sandbox(request: pytest.FixtureRequest) -> Iterator[SandboxServer]:
    """A sandbox whose asynchronous jobs take ``request.param`` seconds (6 unless parametrized
    with ``indirect=True``): Klaviyo under load, when no fixed settle time is enough."""
    yield from _sandbox(float(getattr(request, "param", 6.0)))


@pytest.fixture
def slow_stack(
    redis_server: RedisServer, redis_url: str, slow_sandbox: SandboxServer, tmp_path: Path
) -> Iterator[Stack]:
    """``stack`` against ``slow_sandbox``."""
    yield from _stack(redis_url, slow_sandbox, tmp_path)


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
