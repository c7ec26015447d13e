"""The one shape every producer hands to the engine: an audience event.

Producers (webhook, CLI, backfill) turn Lytics payloads into ``AudienceEvent``
values; the engine's tasks receive them as plain dicts (``to_wire``) inside
Celery messages whose displayed arguments are masked.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class Action(StrEnum):
    """What happened to the user in the audience."""

    ENTER = "enter"
    EXIT = "exit"
    CHANGE = "change"  # mapped fields changed; membership untouched


class AudienceEvent(BaseModel):
    """One user entering, exiting or changing in one audience, at the source's own time."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    audience: str = Field(min_length=1)  # the segment id or slug as Lytics sent it
    action: Action
    ts_ns: int = Field(ge=0)  # event time, nanoseconds since the epoch (Lytics' own clock)
    profile: dict[str, Any]  # only the Lytics fields the job reads (email field + mapped fields)
    # when the receiver got the event (its own clock, ns); None: a producer that does not say
    received_ns: int | None = Field(default=None, ge=0)

    def to_wire(self) -> dict[str, Any]:
        """A JSON-safe dict for a Celery message."""
        wire: dict[str, Any] = {
            "audience": self.audience,
            "action": self.action.value,
            "ts_ns": self.ts_ns,
            "profile": self.profile,
        }
        if self.received_ns is not None:
            wire["received_ns"] = self.received_ns
        return wire

    @classmethod
    def from_wire(cls, raw: dict[str, Any]) -> AudienceEvent:
        return cls.model_validate(raw)


_EVENT_LIST = TypeAdapter(list[AudienceEvent])


def events_from_json(raw: bytes | str) -> list[AudienceEvent]:
    """A JSON array of wire events, parsed and validated in one pass (a backfill chunk)."""
    return _EVENT_LIST.validate_json(raw)
