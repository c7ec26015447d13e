"""``klaviyo-export health``: green when everything works, one red line per failing component."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from console.cli import main
from core.keys import JobKeys, heartbeat_key
from sandbox.server import SandboxServer
from tests.conftest import RedisServer
from tests.harness import Stack
from tests.ops.conftest import JOB
from worker.state.deadletter import DeadLetter, DeadLetterStore
from worker.state.jobstate import JobStateStore

Configure = Callable[[Stack], None]


def health(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["health", *args])
    return code, capsys.readouterr().out


def test_healthy_stack_exits_0_and_json_shows_every_component(
        stack: Stack, configure: Configure, capsys: pytest.CaptureFixture[str]) -> None:
    stack.write_jobs(JOB)
    configure(stack)
    code, out = health(capsys, "--json")
    report = json.loads(out)
    assert code == 0, out
    assert report["ok"] is True
    parts = report["components"]
    assert parts["redis"]["ok"] is True
    assert parts["klaviyo[vip]"]["ok"] is True
    assert parts["queue[realtime]"]["ok"] is True
    assert parts["dead-letters[vip]"]["ok"] is True
    assert parts["heartbeat[realtime]"]["ok"] is None  # no worker has run yet: not expected
    assert {"ok", "detail", "at"} <= set(parts["redis"])
    assert "pk_" not in out
    code, out = health(capsys)  # the limiter allows 1 get_accounts a second: the CLI waits it out
    assert code == 0 and out.startswith("healthy"), out


def test_redis_down_names_redis(tmp_path: Path, stack: Stack, configure: Configure,
                                capsys: pytest.CaptureFixture[str]) -> None:
    own = RedisServer(tmp_path).start()
    stack.redis_url = own.url
    stack.write_jobs(JOB)
    configure(stack)
    own.stop()
    code, out = health(capsys)
    assert code == 1
    assert out.splitlines()[0].startswith("unhealthy redis: unreachable"), out
    assert len(out.splitlines()) == 1  # Klaviyo is not checked without the limiter: not red


def test_klaviyo_refusing_the_key_names_the_job(stack: Stack, configure: Configure,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    stack.write_jobs(JOB)
    configure(stack)
    stack.admin("POST", "faults", json={"auth_fail": True})
    code, out = health(capsys)
    assert code == 1
    assert out.strip().startswith("unhealthy klaviyo[vip]: AuthError (HTTP 401)"), out


def test_sandbox_stopped_names_klaviyo(
        stack: Stack, sandbox_server: SandboxServer, configure: Configure,
        capsys: pytest.CaptureFixture[str]) -> None:
    stack.write_jobs(JOB)
    configure(stack)
    sandbox_server.stop()
    code, out = health(capsys)
    assert code == 1
    assert out.strip().startswith("unhealthy klaviyo[vip]: TransientError"), out


def test_stale_heartbeat_full_queue_and_dead_letters_are_each_named(
        stack: Stack, configure: Configure, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    stack.write_jobs(JOB)
    monkeypatch.setenv("QUEUE_DEPTH_THRESHOLD", "2")
    configure(stack)
    r = redis.Redis.from_url(stack.redis_url)
    r.set(heartbeat_key(stack.prefix, "realtime"), str(time.time() - 3600))
    r.set(heartbeat_key(stack.prefix, "backfill"), str(time.time()))
    r.rpush(f"{stack.prefix}:celery:backfill", "a", "b", "c")
    DeadLetterStore(r, stack.prefix, "vip").add([DeadLetter(email="ann@example.com", reason="x",
                                                            source="test")])
    code, out = health(capsys, "--require-workers")
    assert code == 1
    names = sorted(line.split(":")[0].removeprefix("unhealthy ") for line in out.splitlines())
    assert names == ["dead-letters[vip]", "heartbeat[maintenance]", "heartbeat[realtime]",
                     "queue[backfill]"], out
    assert "ann@example.com" not in out


def test_a_paused_job_is_shown_and_its_key_not_used(
        stack: Stack, configure: Configure, capsys: pytest.CaptureFixture[str]) -> None:
    """health calls Klaviyo for no paused job (nothing is sent for it), and says it is paused."""
    stack.write_jobs(JOB)
    configure(stack)
    JobStateStore(redis.Redis.from_url(stack.redis_url), JobKeys(stack.prefix, "vip")).pause()
    stack.admin("DELETE", "stats")
    code, out = health(capsys, "--json")
    parts = json.loads(out)["components"]
    assert parts["job[vip]"] == {**parts["job[vip]"], "ok": None,
                                 "detail": "paused: Klaviyo not called"}
    assert "klaviyo[vip]" not in parts and code == 0
    assert stack.admin("GET", "stats")["total"]["calls"] == 0
