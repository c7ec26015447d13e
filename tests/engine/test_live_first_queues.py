"""Live first in the worker's pool: a worker that consumes every queue (as deployed) takes
live messages before backfill chunks, however many chunks wait (issue #16, "a backfill must
never hold back real-time enters").

kombu's default order is round robin: with both queues full a worker takes every other
message from the backfill, and live enters arriving faster than that waited for tens of
seconds behind chunks (the benchmark's live probe during a backfill).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import redis

from core.events import Action
from core.keys import broker_queue_key
from core.names import BACKFILL
from tests.backfill.helpers import run_start, write_jsonl
from tests.harness import Stack, event

E = Action.ENTER
T0 = 1_764_000_000_000_000_000
LIVE_ENTERS = 10


def _fetched(log: str) -> list[str]:
    """The task names the worker took off its queues, in order (``received`` lines)."""
    names = []
    for line in log.splitlines():
        if line.startswith("{"):
            found = re.match(r"Task (\S+)\[[^\]]+\] received", json.loads(line).get("msg", ""))
            if found:
                names.append(found.group(1))
    return names


def test_live_enters_are_taken_before_waiting_backfill_chunks(stack: Stack,
                                                              tmp_path: Path) -> None:
    """One worker process, a backfill's chunks waiting in their queue, then ten live
    enters as ten messages: the worker takes all ten before another chunk (one chunk may
    already be on its way to the process)."""
    stack.write_jobs(
        {"id": "bulk", "audiences": ["bulk"], "new_list_name": "Bulk"},
        {"id": "live", "audiences": ["vip"], "new_list_name": "Live"},
    )
    stack.start_worker(concurrency=1)
    stack.send("live", [event("first@example.com", "vip", E, T0)])
    stack.wait_for_members("live", {"first@example.com"})
    rows = [{"email": f"bulk{i:06d}@example.com"} for i in range(80_000)]
    run_start(stack, "bulk", "--from-file", str(write_jsonl(tmp_path / "bulk.jsonl", rows)))
    broker = redis.Redis.from_url(stack.redis_url)
    waiting = broker.llen(broker_queue_key(stack.prefix, BACKFILL))
    assert waiting >= 2 * LIVE_ENTERS, f"only {waiting} chunks wait: the test needs a backlog"
    live = [f"live{i}@example.com" for i in range(LIVE_ENTERS)]
    for i, address in enumerate(live):  # ten messages, as ten webhook bodies make
        stack.send("live", [event(address, "vip", E, T0 + 1 + i)])
    stack.wait_for_members("live", {"first@example.com", *live}, timeout=120)
    fetched = _fetched(stack.log(tail=None))
    enters = [i for i, name in enumerate(fetched) if name == "audience.enter"][1:]  # the ten
    assert len(enters) == LIVE_ENTERS, fetched
    between = fetched[enters[0]:enters[-1]].count("backfill.chunk")
    assert between <= 1, f"{between} chunks taken among the live enters: {fetched[enters[0]:]}"
