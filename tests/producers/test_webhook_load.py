"""Load spec: a real uvicorn receiver on loopback accepts batched bodies at thousands/s."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson
import pytest
import redis
from lytics_samples import TOKEN, batch, queued_messages

BODIES, EVENTS_PER_BODY, THREADS = 30, 1000, 4
FLOOR = 1000  # events/s; the target on a 2-core machine is 5,000
JOBS_TOML = """
[[jobs]]
id = "vip"
audiences = ["vip_buyers"]
field_map = { first_name = "first_name" }
"""
SERVE = ("import argparse, sys; from console.commands import webhook; "
         "sys.exit(webhook.run(argparse.Namespace(host='127.0.0.1', port=int(sys.argv[1]), "
         "insecure_no_auth=False)))")


@pytest.fixture
def receiver_url(redis_url: str, free_tcp_port: int, tmp_path: Path) -> Iterator[str]:
    """``klaviyo-export webhook``'s code path under uvicorn, in its own process."""
    (tmp_path / "jobs.toml").write_text(JOBS_TOML)
    env = {**os.environ, "REDIS_URL": redis_url, "KEY_PREFIX": "load", "WEBHOOK_TOKEN": TOKEN,
           "EXPORT_JOBS_FILE": str(tmp_path / "jobs.toml")}
    with (tmp_path / "webhook.log").open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-c", SERVE, str(free_tcp_port)], env=env,
                                stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    url = f"http://127.0.0.1:{free_tcp_port}"
    try:
        _wait_ready(url, proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the receiver exited during start-up"
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("the receiver did not become ready")


@pytest.mark.slow
def test_batched_bodies_throughput(receiver_url: str, redis_url: str) -> None:
    """30 bodies of 1,000 events from 4 threads are all accepted and queued, above the floor."""
    # given: bodies encoded beforehand, and one request to warm the connections up
    bodies = [orjson.dumps(batch(EVENTS_PER_BODY, start=i * EVENTS_PER_BODY))
              for i in range(BODIES)]
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    url = f"{receiver_url}/webhooks/lytics/vip"
    with httpx.Client(timeout=30) as warm:
        assert warm.post(url, content=orjson.dumps(batch(1, start=10**6)),
                         headers=headers).status_code == 202

    def post(raw: bytes) -> int:
        with httpx.Client(timeout=30) as client:
            return int(client.post(url, content=raw, headers=headers).json()["accepted"])

    # when
    started = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        accepted = sum(pool.map(post, bodies, timeout=120))
    elapsed = time.perf_counter() - started
    # then
    rate = accepted / elapsed
    print(f"\nwebhook load: {accepted:,} events in {elapsed:.2f}s = {rate:,.0f} events/s")
    assert accepted == BODIES * EVENTS_PER_BODY
    queued = queued_messages(redis.Redis.from_url(redis_url), "load")
    assert sum(len(events) for _task, _job, events in queued) == accepted + 1
    assert rate > FLOOR
