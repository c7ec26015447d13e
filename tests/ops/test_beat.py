"""Beat: two beat processes, one scheduler; every entry expires; each queue gets a heartbeat."""

from __future__ import annotations

import json
import os
import signal
import time

import redis

from core.keys import broker_queue_keys, heartbeat_key
from core.settings import Settings
from tests.conftest import wait_until
from tests.harness import Stack
from tests.ops.conftest import JOB
from worker.celery_app import create_app
from worker.ops.schedule import QUEUES, OpsSettings, beat_config

FAST = {"HEARTBEAT_INTERVAL_SECONDS": "1", "BEAT_LOCK_TIMEOUT_SECONDS": "3",
        "BEAT_MAX_LOOP_INTERVAL_SECONDS": "0.5"}


def heartbeats_sent(client: redis.Redis, prefix: str, queue: str) -> int:
    """Heartbeat messages waiting in ``queue`` (no worker consumes them in this test)."""
    raw = [m for key in broker_queue_keys(prefix, queue) for m in client.lrange(key, 0, -1)]
    return sum(json.loads(m)["headers"]["task"] == "ops.heartbeat" for m in raw)


def test_every_entry_expires_after_its_period(stack: Stack) -> None:
    config = beat_config(stack.settings(), OpsSettings())
    assert config["beat_scheduler"] == "worker.ops.beat:RedBeatScheduler"  # RedBeat, restart-proof
    assert config["redbeat_key_prefix"].startswith(f"{stack.prefix}:")
    assert config["redbeat_lock_timeout"] <= 60
    entries = config["beat_schedule"]
    wanted = {"safety-flush", "list-bootstrap", "confirmations", "full-audits", "health"}
    assert wanted <= set(entries)
    assert {f"heartbeat-{q}" for q in QUEUES} <= set(entries)
    for entry in entries.values():
        assert entry["options"]["expires"] == entry["schedule"]
    assert entries["health"]["schedule"] >= 60  # Klaviyo get_accounts: 15 a minute per key
    # passes over recent joiners: beat asks at the shorter cadence, each job is due at its own
    assert entries["confirmations"]["schedule"] == 60.0  # CONFIRM_INTERVAL_SECONDS < 300
    quick = Settings(confirm_interval_seconds=60, audit_incremental_seconds=20)
    assert beat_config(quick)["beat_schedule"]["confirmations"]["schedule"] == 20


def test_two_beats_send_each_entry_once_per_period_and_the_standby_takes_over(stack: Stack) -> None:
    stack.extra_env.update(FAST)
    stack.write_jobs(JOB)
    client = redis.Redis.from_url(stack.redis_url)
    first = stack.start_beat()
    wait_until(lambda: heartbeats_sent(client, stack.prefix, "realtime") >= 1, timeout=20,
               message="the first beat to send a heartbeat")
    second = stack.start_beat()
    time.sleep(1.0)
    before = {q: heartbeats_sent(client, stack.prefix, q) for q in QUEUES}
    time.sleep(6.0)
    for queue in QUEUES:
        sent = heartbeats_sent(client, stack.prefix, queue) - before[queue]
        assert 4 <= sent <= 7, f"{queue}: {sent} heartbeats in 6 s\n{stack.log('beat')}"

    os.killpg(first.pid, signal.SIGKILL)  # no lock release: the standby waits out the timeout
    first.wait(timeout=10)
    killed = heartbeats_sent(client, stack.prefix, "realtime")
    wait_until(lambda: heartbeats_sent(client, stack.prefix, "realtime") >= killed + 3, timeout=15,
               message="the standby beat to take over")
    assert second.poll() is None


def test_a_worker_consumes_every_queue_and_health_is_stored(stack: Stack) -> None:
    stack.extra_env.update(FAST)
    stack.write_jobs(JOB)
    client = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    stack.start_worker()
    stack.start_beat()
    for queue in QUEUES:
        wait_until(lambda q=queue: client.get(heartbeat_key(stack.prefix, q)), timeout=20,  # type: ignore[misc]
                   message=f"a heartbeat from {queue}")
    app = create_app(stack.settings())
    try:  # beat's first health run is one period (60 s) after it starts: ask for one now
        app.send_task("ops.health", queue="maintenance")
    finally:
        app.close()
    health = wait_until(lambda: client.hgetall(f"{stack.prefix}:health"), timeout=20,
                        message="the health task to store its results")
    assert isinstance(health, dict)
    assert json.loads(health["redis"])["ok"] is True
    klaviyo = json.loads(health["klaviyo[vip]"])
    assert klaviyo["ok"] is True and {"detail", "at"} <= set(klaviyo)
