"""Shared fixtures: a private redis-server per test session, free ports, bounded waits."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

REDIS_SERVER = shutil.which("redis-server")


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    predicate: Callable[[], object],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str = "condition",
    *,
    fail: bool = True,
) -> object:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    if not fail:
        return last
    raise AssertionError(f"timed out after {timeout}s waiting for {message} (last: {last!r})")


class RedisServer:
    """A redis-server process of our own, on a free port, in a temporary directory."""

    def __init__(self, workdir: Path, *, appendonly: bool = False) -> None:
        if REDIS_SERVER is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.workdir = workdir
        self.port = free_port()
        self.appendonly = appendonly
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        assert REDIS_SERVER is not None
        args = [
            REDIS_SERVER,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.workdir),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "always",
            "--maxmemory-policy",
            "noeviction",
            "--logfile",
            "redis.log",
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        wait_until(lambda: _pings(client), timeout=10, message="redis-server to answer")
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One private Redis for the whole session, so parallel checkouts never share queues."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def aof_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis of the test's own with its append-only file on, so that a test can kill and
    restart it (same port, same directory) and find the queue and the state again."""
    server = RedisServer(tmp_path_factory.mktemp("aof"), appendonly=True).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """The session Redis, emptied after each test."""
    yield redis_server.url
    redis.Redis.from_url(redis_server.url).flushall()


@pytest.fixture
def redis_client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url, decode_responses=True)


@pytest.fixture(autouse=True)
def _no_real_services(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing in the suite may reach the real Klaviyo or Lytics, nor read a developer's .env."""
    for name in ("KLAVIYO_API_KEY", "WEBHOOK_TOKEN", "LYTICS_API_TOKEN", "SENTRY_DSN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KLAVIYO_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("LYTICS_BASE_URL", "http://127.0.0.1:9")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
