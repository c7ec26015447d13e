"""A backfill run finishes when every dispatched chunk is counted, whatever its chords do."""

from __future__ import annotations

import redis

from core.runs import RunStore


def _dispatched(client: redis.Redis, chunks: int) -> RunStore:
    store = RunStore(client, "p", "job", "run1")
    client.hset(store.key, mapping={"status": "running", "dispatched": chunks, "segments": 1,
                                    "segments_done": 0, "dispatch_done": 1})
    return store


def test_the_last_chunk_counted_finishes_the_run_without_its_chord(
        redis_client: redis.Redis) -> None:
    """A chord callback lost with a killed worker cannot leave the run unfinished."""
    store = _dispatched(redis_client, chunks=2)
    store.commit(0, {"n": 0, "profiles": 10, "exported": 10}, {})
    assert store.progress()["status"] == "running"
    store.commit(1, {"n": 1, "profiles": 10, "exported": 9, "omitted": {"no_email": 1}}, {})
    info = store.progress()
    assert info["status"] == "finished" and info["segments_done"] == "0"
    assert (info["profiles"], info["exported"], info["omitted:no_email"]) == ("20", "19", "1")


def test_a_chunk_counted_again_changes_nothing(redis_client: redis.Redis) -> None:
    """A redelivered chunk gets its first result back and the run is finished once."""
    store = _dispatched(redis_client, chunks=1)
    first = store.commit(0, {"n": 0, "profiles": 10, "exported": 10}, {})
    finished_at = store.progress()["finished_at"]
    again = store.commit(0, {"n": 0, "profiles": 10, "exported": 7}, {})
    assert again == first and store.progress()["profiles"] == "10"
    assert store.progress()["finished_at"] == finished_at


def test_no_run_finishes_before_dispatch_is_over(redis_client: redis.Redis) -> None:
    store = _dispatched(redis_client, chunks=1)
    redis_client.hset(store.key, "dispatch_done", 0)
    store.commit(0, {"n": 0, "profiles": 10, "exported": 10}, {})
    assert store.progress()["status"] == "running"
