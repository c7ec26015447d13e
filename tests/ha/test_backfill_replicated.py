"""A backfill's checkpoint only moves past chunks that a replica holds.

The chunks and their messages go to the master; if it fails before a replica has them, they
are gone with it. So the producer confirms each segment with ``WAIT`` (after a write of its
own) before it records the checkpoint: a replica that does not answer stops the run with the
checkpoint before the segment, and the rerun sends that segment again.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from core import redisconn
from core.jobs import ExportJob
from core.settings import Settings
from producers.backfill.member import Member
from producers.backfill.producer import Producer
from tests.ha.conftest import SentinelCluster
from worker.celery_app import create_app

JOB = ExportJob(id="bf", audiences=("aud_a",))
TS = 1_714_564_800 * 10**9


class People:
    """Six people, two to a chunk."""

    def describe(self) -> str:
        return "file:/people.jsonl"

    def snapshot_ns(self) -> int:
        return TS

    def total(self) -> int | None:
        return 6

    def members(self, position: dict[str, Any]) -> Iterator[Member]:
        start = int(position.get("line", 0))
        for i in range(start, 6):
            yield Member({"email": f"p{i}@example.com"}, ("aud_a",), {"line": i + 1})


def test_a_segment_no_replica_acknowledged_is_not_checkpointed(cluster: SentinelCluster) -> None:
    settings = Settings(redis_url=cluster.url, key_prefix="habf", redis_wait_timeout_ms=300)
    client = redisconn.client(settings, socket_timeout=5)
    app = create_app(settings)
    try:
        os.kill(cluster.replica.proc.pid, signal.SIGSTOP)  # the replica stops acknowledging
        try:
            first = Producer(client, "habf", JOB, People(), app=app, segment_chunks=1,
                             chunk_size=2, durable=redisconn.Replicated(client, settings))
            with pytest.raises(redisconn.NotReplicated):
                first.run()
            assert "checkpoint" not in first.store.progress()  # nothing claimed as sent
        finally:
            os.kill(cluster.replica.proc.pid, signal.SIGCONT)

        again = Producer(client, "habf", JOB, People(), app=app, segment_chunks=1,
                         chunk_size=2, durable=redisconn.Replicated(client, settings))
        assert again.resumed and again.run_id == first.run_id and again.cursor.chunk == 0
        again.run()
        progress = again.store.progress()
        assert progress["dispatched"] == "3" and progress["dispatch_done"] == "1"
    finally:
        app.close()
