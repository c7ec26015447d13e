"""A Redis restart under a running worker and beat: both stay up, reconnect and carry on.

Nobody restarts them here: the same processes (same PIDs) must consume events sent after
Redis came back, and beat must keep sending its entries (the heartbeats prove it, as they are
only ever written by a worker running a task that beat sent).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from core.events import Action
from core.keys import heartbeat_key
from sandbox.server import SandboxServer
from tests.conftest import RedisServer, wait_until
from tests.harness import Stack, event
from tests.ops.conftest import JOB
from tests.ops.test_beat import FAST
from worker.ops.schedule import QUEUES

T0 = 1_764_000_000_000_000_000


def _log(workdir: Path, name: str) -> str:
    return (workdir / f"{name}.log").read_text(errors="replace")


def _heartbeats(client: redis.Redis, prefix: str) -> dict[str, float]:
    values = {q: client.get(heartbeat_key(prefix, q)) for q in QUEUES}
    return {q: float(v) for q, v in values.items() if v is not None}


def _all_fresh(client: redis.Redis, prefix: str, after: float) -> bool:
    try:
        beats = _heartbeats(client, prefix)
    except redis.RedisError:
        return False
    return len(beats) == len(QUEUES) and min(beats.values()) > after


@pytest.mark.faults
@pytest.mark.parametrize("how", ["kill", "stop"])
def test_worker_and_beat_survive_a_redis_restart_without_being_restarted(
    how: str, aof_redis: RedisServer, sandbox_server: SandboxServer, tmp_path: Path
) -> None:
    stack = Stack(redis_url=aof_redis.url, sandbox_url=sandbox_server.url, workdir=tmp_path)
    stack.extra_env.update(FAST)
    client = redis.Redis.from_url(aof_redis.url, decode_responses=True)
    try:
        stack.write_jobs(JOB)
        worker = stack.start_worker()
        beat = stack.start_beat()
        wait_until(lambda: _all_fresh(client, stack.prefix, 0), timeout=30,
                   message="a heartbeat on every queue before the restart")
        before = [f"a{i:04d}@example.com" for i in range(2000)]
        stack.send("vip", [event(e, "vip_buyers", Action.ENTER, T0) for e in before])
        wait_until(lambda: int(stack.counters("vip").get("added", 0)) > 0, timeout=30,
                   message="the worker to be busy exporting")

        # Redis goes away mid-run, with tasks unacknowledged (acks_late) in the worker
        (aof_redis.kill if how == "kill" else aof_redis.stop)()
        wait_until(lambda: "Connection to broker lost" in _log(tmp_path, "w1"), timeout=30,
                   message="the worker to notice")
        wait_until(lambda: "unreachable" in _log(tmp_path, "beat") or beat.poll() is not None,
                   timeout=30, message="beat to notice")
        aof_redis.start()  # same port, same dir: the AOF brings the data back
        back = time.time()

        after = [f"b{i:04d}@example.com" for i in range(2000)]
        stack.send("vip", [event(e, "vip_buyers", Action.ENTER, T0 + 1) for e in after])
        stack.wait_for_members("vip", set(before + after), timeout=90)
        wait_until(lambda: _all_fresh(client, stack.prefix, back), timeout=60,
                   message=f"beat's heartbeats to run again after the restart\n{stack.log('beat')}")
        assert worker.poll() is None, stack.log("w1")
        assert beat.poll() is None, stack.log("beat")
        assert stack.workers == [worker, beat]  # the same two processes, never restarted
        stack.assert_reconciled("vip", entered=4000, members=4000)
    finally:
        stack.stop_all()
