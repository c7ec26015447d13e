"""A Sentinel failover under load: the primary is killed (SIGKILL) while a backfill runs and
Lytics' webhook traffic keeps arriving, and nothing acknowledged is lost.

Nobody restarts the worker, beat or the webhook receiver: the same processes follow the
master to the promoted replica. The killed primary is started again (an orchestrator would do
the same), and Sentinel makes it a replica of the new master, so that the receiver's 202 —
which promises the events are on a replica (``WAIT``) — is possible again. Meanwhile it
answers 503, and the traffic below does what Lytics does: sends the same body again.

The sandbox and the limiter run ten times faster than Klaviyo's clock (``speed`` 10), so the
limiter's fence after a failover (the rest of the 60 s window) lasts at most about 6 s.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from core import redisconn
from core.keys import heartbeat_key
from sandbox.server import SandboxServer
from tests.backfill.helpers import members, start_cmd, throttled, write_jsonl
from tests.conftest import free_port, wait_until
from tests.ha.conftest import SentinelCluster
from tests.harness import ROOT, Stack
from tests.ops.test_beat import FAST
from worker.ops.schedule import QUEUES

TOKEN = "ha-webhook-token-0123456789"
SPEED = 10.0
JOB = {"id": "vip", "audiences": ["vip_buyers"], "new_list_name": "VIP HA",
       "new_list_opt_in": "single"}
BACKFILL_PROFILES = 6000
PER_BODY = 10


def lytics_body(email: str, at: str) -> dict[str, Any]:
    entry = {"id": "5d3c8a1f0b7e4c29a6f1e2d3c4b5a697", "event": "enter", "slug": "vip_buyers",
             "enter": at}
    return {"id": "1576", "data": {"email": email, "_uid": email, "segment_events": [entry]},
            "meta": {"object": "user", "timestamp": at}}


@dataclass
class Traffic:
    """Lytics: bodies of new members, each sent again after a 503 until it is accepted."""

    url: str
    acked: set[str] = field(default_factory=set)
    sent: set[str] = field(default_factory=set)
    refused: int = 0  # answers other than 202 (503s, connection errors)
    replayed_events: int = 0
    first_ack_after: dict[str, float] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    errors: list[str] = field(default_factory=list)

    def run(self) -> None:
        n = 0
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(timeout=15, headers=headers) as client:
            while not self.stop.is_set():
                emails = [f"live{n + i:05d}@example.com" for i in range(PER_BODY)]
                n += PER_BODY
                at = time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime())
                payload = [lytics_body(e, at) for e in emails]
                self.sent.update(emails)
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    try:
                        status = client.post(self.url, json=payload).status_code
                    except httpx.TransportError:
                        status = 0
                    if status == 202:
                        self.acked.update(emails)
                        break
                    if status not in (0, 503):
                        self.errors.append(f"status {status}")
                        return
                    self.refused += 1
                    self.replayed_events += len(emails)
                    time.sleep(0.2)
                else:
                    self.errors.append("a body was refused for two minutes")
                    return
                time.sleep(0.05)


def _stale_heartbeats(client: Any, prefix: str, after: float) -> list[str]:
    """The queues whose last heartbeat (a task beat sends) is not newer than ``after``."""
    try:
        beats = {q: client.get(heartbeat_key(prefix, q)) for q in QUEUES}
    except redis.RedisError:  # Redis may be failing over
        return list(QUEUES)
    return [q for q, b in beats.items() if b is None or float(b) <= after]


def _start_backfill(stack: Stack, path: Path) -> tuple[int, str]:
    """``klaviyo-export start`` until it returns 0 (a failover asks for a rerun); reruns."""
    output = ""
    for reruns in range(6):
        proc = subprocess.run(start_cmd("vip", "--from-file", str(path), "--segment-chunks", "1"),
                              cwd=ROOT, env=stack.env(), capture_output=True, text=True,
                              timeout=180, check=False)
        output += proc.stdout + proc.stderr
        if proc.returncode == 0:
            return reruns, output
        assert "rerun to resume" in proc.stderr, output
        time.sleep(1)
    raise AssertionError(f"the backfill never completed:\n{output}")


@pytest.mark.faults
@pytest.mark.slow
def test_a_failover_mid_run_loses_nothing_acknowledged_and_restarts_nothing(
    cluster: SentinelCluster, tmp_path: Path
) -> None:
    sandbox = SandboxServer(speed=SPEED, profile="fast", job_delay=0.1).start()
    stack = Stack(redis_url=cluster.url, sandbox_url=sandbox.url, workdir=tmp_path, speed=SPEED)
    stack.extra_env.update({**FAST, "WEBHOOK_TOKEN": TOKEN, "REDIS_WAIT_TIMEOUT_MS": "500"})
    client = redisconn.url_client(cluster.url, decode_responses=True, socket_timeout=3)
    traffic_thread: threading.Thread | None = None
    traffic: Traffic | None = None
    try:
        stack.write_jobs(JOB)
        rows, valid, _bad = members(BACKFILL_PROFILES)
        source = write_jsonl(tmp_path / "audience.jsonl", rows)
        worker = stack.start_worker(concurrency=2)
        beat = stack.start_beat()
        port = free_port()
        webhook = stack._spawn("webhook.log", [str(Path(start_cmd()[0])), "webhook", "--port",
                                               str(port)], stack.env())
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _ready(url), timeout=60, message="the webhook receiver")
        wait_until(lambda: not _stale_heartbeats(client, stack.prefix, 0), timeout=60,
                   message="heartbeats on every queue before the failover")

        # given: live traffic and a backfill running
        traffic = Traffic(f"{url}/webhooks/lytics/vip")
        traffic_thread = threading.Thread(target=traffic.run, daemon=True)
        traffic_thread.start()
        backfill: dict[str, Any] = {}
        backfill_thread = threading.Thread(
            target=lambda: backfill.update(zip(("reruns", "output"),
                                               _start_backfill(stack, source), strict=True)),
            daemon=True)
        backfill_thread.start()
        wait_until(lambda: 0 < int(stack.counters("vip").get("added", 0)) < len(valid) // 2,
                   timeout=90, interval=0.02, message="the backfill to be under way")
        wait_until(lambda: len(traffic.acked) >= 50, timeout=30, message="webhook traffic")

        # when: the primary dies
        acked_before = len(traffic.acked)
        killed_at = time.monotonic()
        old = cluster.primary.port
        os.kill(cluster.primary.proc.pid, signal.SIGKILL)  # type: ignore[union-attr]
        cluster.primary.proc.wait()  # type: ignore[union-attr]
        failover_s = cluster.wait_for_new_master(old)
        cluster.primary.start()  # back as a replica of the new master (Sentinel sees to it)
        wait_until(lambda: len(traffic.acked) > acked_before + 50, timeout=90,
                   message="the webhook to acknowledge again")
        recovered_s = time.monotonic() - killed_at
        after = time.time()
        backfill_thread.join(timeout=180)
        time.sleep(2)
        traffic.stop.set()
        traffic_thread.join(timeout=150)

        # then: the list is exactly the backfill and every acknowledged live member
        assert not traffic.errors, traffic.errors
        assert backfill.get("reruns") is not None, "the backfill did not finish"
        expected = valid | traffic.acked
        assert traffic.acked == traffic.sent  # each body ended up accepted
        stack.wait_for_members("vip", expected, timeout=180)
        stack.assert_reconciled("vip", entered=None, members=len(expected), timeout=60)
        # beat kept sending: every queue's heartbeat (only beat sends them) ran again
        wait_until(lambda: not _stale_heartbeats(client, stack.prefix, after), timeout=60,
                   fail=False)
        assert _stale_heartbeats(client, stack.prefix, after) == [], stack.log("beat")[-3000:]
        assert throttled(stack) == 0, "no call above Klaviyo's limits, failover or not"
        # nobody was restarted: the same worker, beat and receiver processes
        assert worker.poll() is None and beat.poll() is None and webhook.poll() is None
        assert stack.workers == [worker, beat, webhook]
        # and the limiter waited out the window the old master's counts belonged to: the
        # first process to call Klaviyo after the failover raised the fence (the worker, beat,
        # or a rerun of the backfill's `start`, which reads the list first); the others find
        # it standing on the new master and keep to it without saying so
        logs = {n: (tmp_path / f"{n}.log").read_text(errors="replace")
                for n in ("w1", "beat", "webhook")}
        outputs = [*logs.values(), backfill["output"]]
        assert any("the Redis master changed" in text for text in outputs)
        restored = sum(int(n) for n in re.findall(r"Restoring (\d+) unacknowledged", logs["w1"]))
        print(f"\nfailover: Sentinel promoted the replica {failover_s:.2f} s after the kill; "
              f"the webhook acknowledged again after {recovered_s:.2f} s; "
              f"{traffic.refused} bodies refused and sent again ({traffic.replayed_events} "
              f"events replayed); {restored} task messages restored for redelivery; "
              f"backfill reruns: {backfill['reruns']}; "
              f"{len(traffic.acked)} live + {len(valid)} backfilled members")
    finally:
        if traffic is not None:
            traffic.stop.set()
        if traffic_thread is not None:
            traffic_thread.join(timeout=30)
        stack.stop_all()
        sandbox.stop()


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False
