"""Clients that follow the Sentinel master, and what ``WAIT`` can and cannot promise."""

from __future__ import annotations

import os
import signal
import time

import pytest
import redis

from core import redisconn
from core.settings import Settings
from tests.conftest import wait_until
from tests.ha.conftest import SentinelCluster
from worker.limits.failover import Fence


def _retrying(call: object, timeout: float = 20) -> object:
    """The first result of ``call`` that does not raise a Redis error (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()  # type: ignore[operator]
        except redis.RedisError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_a_client_follows_the_master_and_reloads_its_scripts(cluster: SentinelCluster) -> None:
    client = redisconn.url_client(cluster.url, socket_timeout=2)
    script = client.register_script("return redis.call('INCR', KEYS[1])")
    assert script(keys=["n"]) == 1
    assert redisconn.master_generation(client) == 0
    wait_until(lambda: cluster.replica.client().get("n") == "1", message="replication")
    # the replica holds the data but not the script: Redis 7 does not replicate the cache
    assert cluster.replica.client().script_exists(script.sha) == [False]

    old = cluster.primary.port
    os.kill(cluster.primary.proc.pid, signal.SIGKILL)  # type: ignore[union-attr]
    took = cluster.wait_for_new_master(old)
    print(f"\nfailover: {took:.2f} s after the primary was killed")

    assert _retrying(lambda: script(keys=["n"])) == 2  # same client, same Script object
    assert redisconn.master_address(client) == ("127.0.0.1", cluster.replica.port)
    assert redisconn.master_generation(client) == 1


def test_wait_counts_only_the_writes_of_its_own_connection(cluster: SentinelCluster) -> None:
    """Why ``confirm_replicated`` writes before it waits: ``WAIT`` counts replicas up to the
    last write of its own connection, not the writes of other connections (kombu's)."""
    settings = Settings(redis_url=cluster.url, key_prefix="ha", redis_wait_timeout_ms=300)
    publisher = redisconn.client(settings, socket_timeout=5)
    checker = redisconn.client(settings, socket_timeout=5)
    assert redisconn.confirm_replicated(checker, settings) == 1  # a healthy replica acks

    os.kill(cluster.replica.proc.pid, signal.SIGSTOP)  # the replica stops acknowledging
    try:
        publisher.lpush("queue", "event")  # e.g. kombu publishing a task, on its own connection
        naive = checker.execute_command("WAIT", 1, 300)  # type: ignore[no-untyped-call]
        assert naive == 1  # its own last write is on the replica: "acknowledged", wrongly
        with pytest.raises(redisconn.NotReplicated, match="0 of 1"):
            redisconn.confirm_replicated(checker, settings)
    finally:
        os.kill(cluster.replica.proc.pid, signal.SIGCONT)
    assert redisconn.confirm_replicated(checker, settings) == 1


def test_after_a_failover_the_limiter_waits_out_the_window_in_every_process(
        cluster: SentinelCluster) -> None:
    """The promoted replica may lack the last calls counted: no grant until the current
    steady window (60 s / speed) is over, in a process that saw the change and in one started
    after it (a pool process Celery replaced)."""
    speed = 20.0  # a 3 s steady window
    settings = Settings(redis_url=cluster.url, key_prefix="ha")
    old_client = redisconn.client(settings, socket_timeout=2)
    survivor = Fence(old_client, prefix="ha", speed=speed)
    assert survivor.wait() == 0.0  # the windows' master is recorded

    old = cluster.primary.port
    os.kill(cluster.primary.proc.pid, signal.SIGKILL)  # type: ignore[union-attr]
    cluster.wait_for_new_master(old)
    _retrying(old_client.ping)

    newcomer = Fence(redisconn.client(settings, socket_timeout=2), prefix="ha", speed=speed)
    waits = [survivor.wait(), newcomer.wait()]
    assert all(0 < w <= 60 / speed + 0.2 for w in waits), waits
    wait_until(lambda: survivor.wait() == 0.0 and newcomer.wait() == 0.0,
               timeout=60 / speed + 2, message="the fence to end with the window")
