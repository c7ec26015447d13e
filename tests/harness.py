"""A real stack for end-to-end tests: the sandbox over HTTP, Celery workers as subprocesses.

Nothing here is mocked: workers are ``celery -A worker worker`` processes that
talk to a private Redis and to the sandbox on loopback, exactly as in production.
"""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from core import redisconn
from core.dispatch import send_events
from core.events import Action, AudienceEvent
from core.settings import Settings
from sandbox.testing import SandboxClient
from tests.conftest import wait_until
from worker.celery_app import create_app
from worker.commands import beat_argv, worker_argv

API_KEY = "pk_test_harness_0123456789"
ROOT = Path(__file__).resolve().parents[1]


def jobs_toml(jobs: Iterable[dict[str, Any]]) -> str:
    """Render job tables as TOML (only the value types the tests use)."""
    out = []
    for job in jobs:
        out.append("[[jobs]]")
        for key, value in job.items():
            out.append(f"{key} = {_toml(value)}")
        out.append("")
    return "\n".join(out)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f'"{k}" = {_toml(v)}' for k, v in value.items()) + " }"
    raise TypeError(value)


@dataclass
class Stack:
    """Environment shared by the test process and its worker subprocesses."""

    redis_url: str
    sandbox_url: str
    workdir: Path
    speed: float = 1.0
    extra_env: dict[str, str] = field(default_factory=dict)
    prefix: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:8]}")
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def jobs_file(self) -> Path:
        return self.workdir / "jobs.toml"

    def write_jobs(self, *jobs: dict[str, Any]) -> None:
        """Write the jobs file. A job that creates its list and does not choose its opt-in
        asks for single opt-in here (the product's default is double): most tests are about
        membership, not confirmation; the consent tests say ``"double"``, or ``None`` to
        leave the field out and get the product's default."""
        chosen = [job if "list_id" in job or "new_list_opt_in" in job
                  else {**job, "new_list_opt_in": "single"} for job in jobs]
        chosen = [{k: v for k, v in job.items() if v is not None} for job in chosen]
        self.jobs_file.write_text(jobs_toml(chosen), encoding="utf-8")

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KLAVIYO_", "CELERY_"))}
        env.update(
            {
                "REDIS_URL": self.redis_url,
                "KLAVIYO_BASE_URL": self.sandbox_url,
                "KLAVIYO_API_KEY": API_KEY,
                "EXPORT_JOBS_FILE": str(self.jobs_file),
                "KEY_PREFIX": self.prefix,
                "FLUSH_INTERVAL_SECONDS": "0.2",
                "LEASE_SECONDS": "6",
                "SUBSCRIBE_SETTLE_SECONDS": "1",
                "POLL_INTERVAL_SECONDS": "0.2",
                "CONFIRM_INTERVAL_SECONDS": "1",
                "VISIBILITY_TIMEOUT_SECONDS": "15",
                "RATE_LIMIT_SPEED": str(self.speed),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        return env

    def settings(self) -> Settings:
        return Settings(
            redis_url=self.redis_url,
            key_prefix=self.prefix,  # type: ignore[arg-type]
            klaviyo_base_url=self.sandbox_url,
            export_jobs_file=self.jobs_file,
        )

    def _spawn(self, log_name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = open(self.workdir / log_name, "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.workers.append(proc)
        return proc

    def start_worker(
        self, name: str = "w1", concurrency: int = 2, queues: str = "realtime,backfill,maintenance"
    ) -> subprocess.Popen[bytes]:
        proc = self._spawn(f"{name}.log", worker_argv(name, concurrency, queues), self.env())
        wait_until(
            lambda: (
                b"ready." in (self.workdir / f"{name}.log").read_bytes() or proc.poll() is not None
            ),
            timeout=60,
            message=f"worker {name} to be ready",
        )
        assert proc.poll() is None, self.log(name)
        return proc

    def start_beat(self) -> subprocess.Popen[bytes]:
        """celery beat, as production runs it, with a short safety-flush period."""
        env = {**self.env(), "SWEEP_INTERVAL_SECONDS": "1", "BOOTSTRAP_INTERVAL_SECONDS": "2"}
        return self._spawn("beat.log", beat_argv(), env)

    def log(self, name: str = "w1", tail: int | None = 6000) -> str:
        """A process's log: its last ``tail`` characters (None: all of it)."""
        path = self.workdir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return text[-tail:] if tail else text

    def kill_worker(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL the worker and all its children at once: nothing gets to clean up."""
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def stop_all(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.workers:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    # --- driving and observing -----------------------------------------------------------
    def send(self, job_id: str, events: list[AudienceEvent]) -> None:
        app = create_app(self.settings())
        try:
            send_events(app, job_id, events)
        finally:
            app.close()

    def admin(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = requests.request(method, f"{self.sandbox_url}/_sandbox/{path}", timeout=10, **kwargs)
        resp.raise_for_status()
        return resp.json() if resp.content else None

    def list_emails(self, list_id: str) -> set[str]:
        return {e.lower() for e in self.admin("GET", f"lists/{list_id}/emails")["emails"]}

    def job_state(self, job_id: str) -> dict[str, str]:
        r = redisconn.url_client(self.redis_url, decode_responses=True)
        return r.hgetall(f"{self.prefix}:job:{job_id}:state")

    def counters(self, job_id: str) -> dict[str, str]:
        r = redisconn.url_client(self.redis_url, decode_responses=True)
        return r.hgetall(f"{self.prefix}:job:{job_id}:counters")

    def wait_profile(
        self, email: str, check: Callable[[dict[str, Any]], bool], timeout: float = 20
    ) -> dict[str, Any]:
        """The sandbox profile of ``email`` once ``check`` accepts its attributes."""
        api = SandboxClient(self.sandbox_url, API_KEY)

        def fetch() -> dict[str, Any] | None:
            resp = api.call("GET", "/api/profiles", filter=f'equals(email,"{email}")')
            data = resp.json()["data"]
            attrs: dict[str, Any] | None = data[0]["attributes"] if data else None
            return attrs if attrs and check(attrs) else None

        found = wait_until(fetch, timeout=timeout, message=f"profile {email}")
        assert isinstance(found, dict)
        return found

    def assert_reconciled(self, job_id: str, *, entered: int | None, members: int,
                          awaiting: int = 0, timeout: float = 30) -> None:
        """Once the job is idle, counters agree with what happened: exported + omitted +
        failed (people dead-lettered) = input users, where exported = added (confirmed) +
        awaiting confirmation; additions minus removals = the members Klaviyo holds; and
        ``awaiting`` people are awaiting confirmation (double opt-in).

        Idle means nobody pending or held: a worker killed after Klaviyo accepted a call but
        before recording it leaves its users held until the lease ends and another flush counts
        them, so the list can be right a few seconds before the counters are.
        """
        r = redisconn.url_client(self.redis_url)
        base = f"{self.prefix}:job:{job_id}"
        wait_until(lambda: r.zcard(f"{base}:pending") + r.zcard(f"{base}:inflight") == 0,
                   timeout=timeout, message=f"job {job_id} to have nobody pending or held")
        c = self.counters(job_id)
        omitted = sum(int(v) for k, v in c.items() if k.startswith("omitted:"))
        added, removed, failed, waiting = (
            int(c.get(k, 0)) for k in ("added", "removed", "failed", "awaiting_confirmation"))
        if entered is not None:
            assert added + waiting + omitted + failed == entered, c
        assert added - removed == members, c
        assert waiting == awaiting, c

    def wait_for_list(self, job_id: str, timeout: float = 30) -> str:
        found = wait_until(
            lambda: self.job_state(job_id).get("list_id"),
            timeout=timeout,
            message=f"job {job_id} to resolve its list",
        )
        return str(found)

    def wait_for_members(self, job_id: str, expected: set[str], timeout: float = 30) -> str:
        list_id = self.wait_for_list(job_id, timeout)
        found: set[str] = set()

        def exact() -> bool:
            found.clear()
            found.update(self.list_emails(list_id))
            return found == expected

        try:
            wait_until(exact, timeout=timeout,
                       message=f"list {list_id} to hold exactly {len(expected)} members")
        except AssertionError as exc:  # say how far off, so that a failure in CI can be read
            missing, extra = sorted(expected - found), sorted(found - expected)
            raise AssertionError(
                f"{exc}: {len(missing)} missing (e.g. {missing[:3]}), {len(extra)} extra "
                f"(e.g. {extra[:3]}); counters {self.counters(job_id)}; log tails:\n"
                + "\n".join(f"{path.name}: {path.read_text(errors='replace')[-1200:]}"
                             for path in sorted(self.workdir.glob("*.log")))) from None
        return list_id


def event(
    email: str | None, audience: str, action: Action, ts_ns: int, **fields: Any
) -> AudienceEvent:
    profile: dict[str, Any] = dict(fields)
    if email is not None:
        profile["email"] = email
    return AudienceEvent(audience=audience, action=action, ts_ns=ts_ns, profile=profile)


def dedent(text: str) -> str:
    return textwrap.dedent(text).strip() + "\n"
