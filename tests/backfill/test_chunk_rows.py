"""A stored chunk: one row per person with every selected audience, counted once each; and the
snapshot time a run is stamped with, kept when it resumes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import redis
from celery import Celery

from core.chunks import chunk_from_json, chunk_json
from core.jobs import ExportJob
from producers.backfill.member import Member
from producers.backfill.producer import Producer
from worker.engine.backfill_rows import chunk_marks

JOB = ExportJob(id="bf", audiences=("aud_a", "aud_b"), field_map={"first_name": "first_name"})
TS = 1_714_564_800 * 10**9


def _row(email: str, *audiences: str, **fields: Any) -> dict[str, Any]:
    return Member({"email": email, **fields}, audiences, {}).wire(TS)


def test_a_row_in_two_audiences_is_one_person_with_an_enter_in_each() -> None:
    """Marks for both audiences, at the row's time; exported and omitted count people."""
    rows = [_row("Both@X.io", "aud_a", "aud_b", first_name="B"), _row("a@x.io", "aud_a"),
            _row("bad@@x", "aud_a", "aud_b")]
    made = chunk_marks(JOB, chunk_from_json(chunk_json(rows, {"not_in_audience": 3})))
    assert sorted((m.email, m.audience, m.action, m.ts_ns) for m in made.marks) == [
        ("a@x.io", "aud_a", "E", TS), ("both@x.io", "aud_a", "E", TS),
        ("both@x.io", "aud_b", "E", TS)]
    assert {m.attributes["first_name"] for m in made.marks if m.email == "both@x.io"} == {"B"}
    assert made.exported == 2
    assert made.omitted == {"invalid_email": 1, "not_in_audience": 3}


def test_a_row_whose_audiences_left_the_job_is_not_in_audience() -> None:
    """The jobs file changed since dispatch: nobody is exported outside the job's audiences."""
    chunk = chunk_from_json(chunk_json([_row("a@x.io", "gone", "aud_b"), _row("b@x.io", "gone")],
                                       {}))
    made = chunk_marks(JOB, chunk)
    assert [(m.email, m.audience) for m in made.marks] == [("a@x.io", "aud_b")]
    assert made.omitted == {"not_in_audience": 1} and chunk.people == 2


def test_a_chunk_stored_before_rows_is_read_as_one_audience_each() -> None:
    """A run in flight across the upgrade finishes: its event arrays still load."""
    legacy = orjson.dumps([{"audience": "aud_b", "action": "enter", "ts_ns": TS,
                            "profile": {"email": "a@x.io"}}])
    made = chunk_marks(JOB, chunk_from_json(legacy))
    assert [(m.email, m.audience, m.ts_ns) for m in made.marks] == [("a@x.io", "aud_b", TS)]


class _Source:
    """A source of nobody, as of a fixed time."""

    def __init__(self, snapshot_ns: int) -> None:
        self.snapshot = snapshot_ns

    def describe(self) -> str:
        return "file:/members.jsonl"

    def snapshot_ns(self) -> int:
        return self.snapshot

    def total(self) -> int | None:
        return 0

    def members(self, position: dict[str, Any]) -> Iterator[Member]:
        return iter(())


def test_a_run_is_stamped_with_the_sources_snapshot_and_keeps_it_when_resumed(
        redis_client: redis.Redis) -> None:
    """Every enter of the run carries the snapshot, not the run's start, even after a rerun."""
    first = Producer(redis_client, "p", JOB, _Source(TS), app=Celery(set_as_current=False))
    assert not first.resumed and first.ts_ns == TS
    again = Producer(redis_client, "p", JOB, _Source(TS + 3600 * 10**9),
                     app=Celery(set_as_current=False))
    assert again.resumed and again.run_id == first.run_id and again.ts_ns == TS
