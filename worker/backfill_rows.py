"""A backfill chunk as stored in Redis: one row per person, and the marks the worker makes of it.

A chunk is ``{"rows": [...], "omitted": {reason: n}}``. A row is one person with every
selected audience the source places them in, and the source's snapshot time::

    {"audiences": ["vip", "buyers"], "ts_ns": 1700000000000000000, "profile": {"email": ...}}

``omitted`` counts the people the producer left out before the chunk (``not_in_audience``:
their ``segments`` name none of the job's audiences; ``invalid_timestamp``: their snapshot
time cannot be used). The chunk holds at most the mode's bulk cap of rows, so one chunk never
claims more users than one Klaviyo call takes, however many audiences each row names.

A chunk written before this format (a JSON array of enter events, one audience each) is read
as rows of one audience, so a run in flight across an upgrade finishes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from worker.events import Action, AudienceEvent
from worker.jobs import ExportJob
from worker.record import to_marks
from worker.state import Mark

NOT_IN_AUDIENCE = "not_in_audience"
INVALID_TIMESTAMP = "invalid_timestamp"


class ChunkRow(BaseModel):
    """One person: the selected audiences they are in, at the source's snapshot time."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    audiences: tuple[str, ...]
    ts_ns: int = Field(ge=0)
    profile: dict[str, Any]


class Chunk(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    rows: list[ChunkRow]
    omitted: dict[str, int] = Field(default_factory=dict)

    @property
    def people(self) -> int:
        """Everyone this chunk accounts for: its rows and those left out before it."""
        return len(self.rows) + sum(self.omitted.values())


_CHUNK = TypeAdapter(Chunk)
_LEGACY = TypeAdapter(list[AudienceEvent])


def chunk_json(rows: list[dict[str, Any]], omitted: dict[str, int]) -> bytes:
    """The stored form of a chunk (rows already in ``ChunkRow`` shape)."""
    return orjson.dumps({"rows": rows, "omitted": omitted})


def chunk_from_json(raw: bytes | str) -> Chunk:
    """A stored chunk, validated in one pass; a legacy event array becomes one-audience rows."""
    text = raw.encode() if isinstance(raw, str) else raw
    if not text.lstrip().startswith(b"["):
        return _CHUNK.validate_json(text)
    rows = [ChunkRow(audiences=(e.audience,), ts_ns=e.ts_ns, profile=e.profile)
            for e in _LEGACY.validate_json(text)]
    return Chunk(rows=rows)


@dataclass
class ChunkMarks:
    """What a chunk records, and its people counted once each by outcome."""

    marks: list[Mark] = field(default_factory=list)
    omitted: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)

    @property
    def exported(self) -> int:
        return len(dict.fromkeys(m.email for m in self.marks))


def chunk_marks(job: ExportJob, chunk: Chunk) -> ChunkMarks:
    """One enter mark per selected audience of each row; each person counted once.

    Rows are grouped by their audiences, so a profile is mapped once (``to_marks`` on one
    event per person) and its marks for the other audiences are copies of the first.
    """
    out = ChunkMarks(omitted=Counter(chunk.omitted))
    groups: dict[tuple[str, ...], list[ChunkRow]] = {}
    for row in chunk.rows:
        selected = tuple(dict.fromkeys(a for a in row.audiences if job.selects(a)))
        if selected:
            groups.setdefault(selected, []).append(row)
        else:  # the jobs file changed since dispatch: nobody is exported outside the job
            out.omitted[NOT_IN_AUDIENCE] += 1
    for audiences, rows in groups.items():
        events = [AudienceEvent.model_construct(audience=audiences[0], action=Action.ENTER,
                                                ts_ns=r.ts_ns, profile=r.profile) for r in rows]
        marks, omitted, dropped = to_marks(job, events)
        out.omitted.update(omitted)
        out.dropped.update(dropped)
        out.marks += marks
        out.marks += [m._replace(audience=a) for m in marks for a in audiences[1:]]
    return out
