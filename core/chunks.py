"""A backfill chunk as stored in Redis: one row per person (written by the producer, read by
the worker, which makes its marks in ``worker.engine.backfill_rows``).

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

from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from core.events import Action, AudienceEvent

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
