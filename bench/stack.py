"""The processes a benchmark run needs: redis-server, the sandbox, Celery workers, and a sampler.

Every process is our own child, started with its own session so it can be stopped as a group.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import redis
import requests

ROOT = Path(__file__).resolve().parents[1]
REVISION = "2026-07-15"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def wait_until(
    predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.05
) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def stop(proc: subprocess.Popen[bytes] | None, timeout: float = 20) -> None:
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


class Redis:
    """A private redis-server on a free port."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(workdir),
                "--save",
                "",
                "--appendonly",
                "no",
                "--logfile",
                "redis.log",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        client = redis.Redis(port=self.port)

        def pings() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        wait_until(pings, 10, "redis-server")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


# The conditions of a real account (issue #16), as sandbox knobs on top of its realistic
# profile: each account's windows at a random phase, 100-300 ms per call, another integration
# using 15 % of every window, and the profile's seconds-long jobs (log-normal, 3 s median).
CONDITIONS = {"window_phase": "random", "latency": "uniform:0.1,0.3", "foreign_share": "0.15"}


class Sandbox:
    """``python -m sandbox`` as its own process at ``speed`` (1 = Klaviyo's real limits), its
    realistic profile with ``knobs`` (default: :data:`CONDITIONS`)."""

    def __init__(self, workdir: Path, speed: float = 1.0,
                 knobs: dict[str, str] | None = None) -> None:
        self.knobs = dict(CONDITIONS if knobs is None else knobs)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        log = open(workdir / "sandbox.log", "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sandbox",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--speed",
                str(speed),
                "--log-level",
                "warning",
                *(arg for k, v in self.knobs.items() for arg in ("--knob", f"{k}={v}")),
            ],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(self._up, 30, "the sandbox")
        self.realism: dict[str, Any] = self.admin("GET", "realism")

    @property
    def foreign_share(self) -> float:
        return float(self.realism.get("foreign_share", 0.0))

    def phase(self, key: str) -> tuple[float, float]:
        """Where the account's burst and steady windows start (seconds past the epoch's)."""
        found = self.admin("GET", f"windows/{fingerprint(key)}")
        return float(found["burst"]), float(found["steady"])

    def _up(self) -> bool:
        try:
            requests.get(f"{self.url}/_sandbox/faults", timeout=1)
        except requests.ConnectionError:
            return False
        return True

    def admin(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = requests.request(method, f"{self.url}/_sandbox/{path}", timeout=120, **kwargs)
        resp.raise_for_status()
        return resp.json() if resp.content else None

    def forget(self) -> None:
        """Forget every account (its profiles, lists, jobs and quotas): each run uses an
        account of its own, and a whole benchmark's profiles (some 13 million at full size,
        about 1 KB each in the sandbox) would not fit in memory."""
        self.admin("POST", "reset")

    def account_stats(self, key: str) -> dict[str, Any]:
        """Per-operation calls, items and 429s for one account (its key's fingerprint)."""
        acct = self.admin("GET", "stats")["accounts"].get(fingerprint(key), {})
        return dict(acct.get("operations", {}))

    def list_emails(self, list_id: str) -> set[str]:
        return {e.lower() for e in self.admin("GET", f"lists/{list_id}/emails")["emails"]}

    def headers(self, key: str) -> dict[str, str]:
        return {
            "Authorization": f"Klaviyo-API-Key {key}",
            "revision": REVISION,
            "Content-Type": "application/vnd.api+json",
            "Accept": "application/vnd.api+json",
        }

    def create_list(self, key: str, name: str) -> str:
        body = {"data": {"type": "list", "attributes": {"name": name}}}
        resp = requests.post(
            f"{self.url}/api/lists", json=body, headers=self.headers(key), timeout=30
        )
        resp.raise_for_status()
        return str(resp.json()["data"]["id"])


@contextmanager
def services(prefix: str) -> Iterator[tuple[Path, Redis, Sandbox]]:
    """A fresh workdir, a Redis of its own and the sandbox at Klaviyo's clock; both stopped
    after, whatever happens."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    rds = Redis(workdir)
    sandbox = Sandbox(workdir, speed=1)
    try:
        yield workdir, rds, sandbox
    finally:
        stop(sandbox.proc)
        stop(rds.proc)


class TreeSampler:
    """Samples CPU seconds and RSS of process trees in a thread; keeps the peaks."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.roots: dict[str, list[psutil.Process]] = {}
        self.peak_rss: dict[str, int] = {}
        self.cpu: dict[str, dict[int, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def watch(self, name: str, pid: int) -> None:
        self.roots.setdefault(name, []).append(psutil.Process(pid))
        self.peak_rss.setdefault(name, 0)
        self.cpu.setdefault(name, {})

    def start(self) -> TreeSampler:
        self._thread.start()
        return self

    def sample(self) -> None:
        for name, roots in list(self.roots.items()):
            rss = 0
            for root in list(roots):
                try:
                    procs = [root, *root.children(recursive=True)]
                except psutil.NoSuchProcess:
                    continue
                for proc in procs:
                    try:
                        with proc.oneshot():
                            rss += proc.memory_info().rss
                            times = proc.cpu_times()
                    except psutil.NoSuchProcess:
                        continue
                    self.cpu[name][proc.pid] = times.user + times.system
            self.peak_rss[name] = max(self.peak_rss[name], rss)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def finish(self) -> None:
        self.sample()
        self._stop.set()
        self._thread.join(5)

    def cpu_seconds(self, name: str) -> float:
        return sum(self.cpu.get(name, {}).values())
