"""The demo's child processes, each leading its own process group, and bounded waits."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import redis
import requests

from console.demo.audience import ROOT
from core import redisconn

STOP_TIMEOUT = 10.0


class DemoError(Exception):
    """The demo cannot go on; the message says why."""


def free_port(preferred: int | None = None) -> int:
    """``preferred`` when nothing listens on it, else any free loopback port."""
    for candidate in ([preferred] if preferred else []) + [0]:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise DemoError("no free TCP port on 127.0.0.1")


def redis_answers(url: str, timeout: float = 1.0) -> bool:
    """True when a Redis at ``url`` answers PING."""
    try:
        client = redisconn.url_client(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, ValueError, OSError):
        return False


def choose_redis(environ: Mapping[str, str], answers: Callable[[str], bool] = redis_answers
                 ) -> str | None:
    """``REDIS_URL`` when it is set and answers; None means: start a private redis-server."""
    url = environ.get("REDIS_URL", "").strip()
    return url if url and answers(url) else None


def redis_server_argv(binary: str, port: int, workdir: Path) -> list[str]:
    """A private, loopback-only redis-server with the production persistence settings."""
    return [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir),
            "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
            "--maxmemory-policy", "noeviction", "--logfile", "redis.log"]


def wait_for(predicate: Callable[[], object], timeout: float, what: str,
             interval: float = 0.25) -> object:
    """Poll until ``predicate`` returns something truthy; DemoError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise DemoError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def http_ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, chars: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


@dataclass
class Processes:
    """Every process the demo started, each leading its own process group."""

    workdir: Path
    children: list[Child] = field(default_factory=list)

    def spawn(self, name: str, argv: Sequence[str], env: Mapping[str, str]) -> Child:
        log = self.workdir / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(list(argv), cwd=ROOT, env=dict(env), stdout=out,  # noqa: S603
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        child = Child(name, proc, log)
        self.children.append(child)
        print(f"  started {name} (pid {proc.pid}, log {log})", flush=True)
        return child

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM every group (newest first), then SIGKILL whatever is left after ``timeout``."""
        for child in reversed(self.children):
            _signal_group(child.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in reversed(self.children):
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"  {child.name} did not stop in {timeout:.0f} s: killing it", flush=True)
        for child in self.children:  # the leader may be gone while its children linger
            _signal_group(child.proc.pid, signal.SIGKILL)
            if child.proc.poll() is None:
                child.proc.wait(timeout=5)
        self.children.clear()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM and SIGINT handler: unwind like Ctrl-C, so everything started gets stopped."""
    raise KeyboardInterrupt
