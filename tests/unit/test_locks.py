"""Locks live as long as their holder (real Redis, a real holder process): one holder at a
time, kept while it works however long, and free within one TTL after it is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import redis

from tests.conftest import wait_until
from worker.state import locks

KEY = "test:lock"
# a holder process: take the lock with a 1 s TTL, say so, then work for a minute
HOLDER = """
import sys, time, redis
from worker.state import locks
with locks.held(redis.Redis.from_url(sys.argv[1]), sys.argv[2], ttl_seconds=1.0) as mine:
    print("held" if mine else "busy", flush=True)
    time.sleep(60)
"""


def start_holder(redis_url: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, redis_url, KEY],
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def free(client: redis.Redis) -> bool:
    with locks.held(client, KEY) as mine:
        return mine


def test_one_holder_at_a_time_and_released_after(redis_client: redis.Redis) -> None:
    with locks.held(redis_client, KEY) as first, locks.held(redis_client, KEY) as second:
        assert first and not second
    assert free(redis_client)
    assert not redis_client.exists(KEY)


def test_a_live_holder_keeps_the_lock_past_its_ttl(
        redis_url: str, redis_client: redis.Redis) -> None:
    holder = start_holder(redis_url)
    try:
        held_until = time.monotonic() + 3.0  # three TTLs of work: only renewals keep it
        while time.monotonic() < held_until:
            assert not free(redis_client)
            time.sleep(0.1)
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)


def test_a_killed_holders_lock_is_free_within_one_ttl(
        redis_url: str, redis_client: redis.Redis) -> None:
    holder = start_holder(redis_url)
    os.killpg(holder.pid, signal.SIGKILL)
    holder.wait(timeout=10)
    killed = time.monotonic()
    wait_until(lambda: free(redis_client), timeout=5, message="the killed holder's lock lapses")
    assert time.monotonic() - killed <= 1.0 + 0.5
