"""A backfill chunk as stored in Redis: one row per person, and the marks the worker makes of it.

A chunk is ``{"rows": [...], "omitted": {reason: n}}``. A row is one person's enter: an
``AudienceEvent`` (``action`` defaults to enter) whose ``also`` names the person's other
selected audiences, at the source's snapshot time::

    {"audience": "vip", "also": ["buyers"], "ts_ns": 1700000000000000000, "profile": {...}}

``omitted`` counts the people the producer left out before the chunk (``not_in_audience``:
their ``segments`` name none of the job's audiences; ``invalid_timestamp``: their snapshot
time cannot be used). A chunk holds at most the mode's bulk cap of rows, so one chunk never
claims more users than one Klaviyo call takes, however many audiences each row names.

A chunk written before this format (a JSON array of enter events) is a list of rows without
``also``, so a run in flight across an upgrade finishes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from core.events import Action, AudienceEvent
from core.jobs import ExportJob
from worker.engine.record import Marked, mark_events
from worker.state.desired import Mark

NOT_IN_AUDIENCE = "not_in_audience"
INVALID_TIMESTAMP = "invalid_timestamp"


class ChunkRow(AudienceEvent):
    """One person entering ``audience`` and every audience in ``also``."""

    action: Action = Action.ENTER
    also: tuple[str, ...] = ()

    @property
    def audiences(self) -> tuple[str, ...]:
        return (self.audience, *self.also)


class Chunk(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    rows: list[ChunkRow]
    omitted: dict[str, int] = Field(default_factory=dict)

    @property
    def people(self) -> int:
        """Everyone this chunk accounts for: its rows and those left out before it."""
        return len(self.rows) + sum(self.omitted.values())


_CHUNK = TypeAdapter(Chunk)
_LEGACY = TypeAdapter(list[ChunkRow])


def chunk_json(rows: list[dict[str, Any]], omitted: dict[str, int]) -> bytes:
    """The stored form of a chunk (rows already in ``ChunkRow`` shape)."""
    return orjson.dumps({"rows": rows, "omitted": omitted})


def chunk_from_json(raw: bytes | str) -> Chunk:
    """A stored chunk, validated in one pass (a legacy event array included)."""
    text = raw.encode() if isinstance(raw, str) else raw
    if text.lstrip().startswith(b"["):
        return Chunk(rows=_LEGACY.validate_json(text))
    return _CHUNK.validate_json(text)


@dataclass
class ChunkMarks:
    """What a chunk records: its marks and the people behind them (``marked``, counted once
    each on the job), and the run's own counts of people left out, by reason."""

    marked: Marked = field(default_factory=Marked)
    omitted: Counter[str] = field(default_factory=Counter)  # the run's counts, by reason

    @property
    def marks(self) -> list[Mark]:
        return self.marked.marks

    @property
    def exported(self) -> int:
        return len(dict.fromkeys(m.email for m in self.marks))


def chunk_marks(job: ExportJob, chunk: Chunk) -> ChunkMarks:
    """One enter mark per selected audience of each row; each person counted once.

    Rows are grouped by their audiences, so a profile is mapped once (``mark_events`` on the
    row itself) and its marks for the other audiences are copies of the first.
    """
    out = ChunkMarks(omitted=Counter(chunk.omitted))
    groups: dict[tuple[str, ...], list[ChunkRow]] = {}
    for row in chunk.rows:
        audiences, kept = row.audiences, row
        if not all(job.selects(a) for a in audiences):  # the jobs file changed since dispatch
            audiences = tuple(dict.fromkeys(a for a in audiences if job.selects(a)))
            if not audiences:  # nobody is exported outside the job's audiences
                out.omitted[NOT_IN_AUDIENCE] += 1
                continue
            kept = row.model_copy(update={"audience": audiences[0], "also": audiences[1:]})
        groups.setdefault(audiences, []).append(kept)
    for audiences, rows in groups.items():
        marked = mark_events(job, rows)
        marks = marked.marks
        out.marked.marks += marks + [m._replace(audience=a) for m in marks for a in audiences[1:]]
        for mine, theirs in ((out.marked.omitted, marked.omitted),
                             (out.marked.dropped, marked.dropped),
                             (out.marked.clamped, marked.clamped)):
            for reason, people in theirs.items():
                mine[reason] |= people
    out.omitted.update({reason: len(people) for reason, people in out.marked.omitted.items()})
    return out
