"""One audience member as a source yields it, and the event the backfill makes of it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from worker.events import Action
from worker.jobs import ExportJob


@dataclass(frozen=True)
class Member:
    """A profile (only the job's fields), its audience, and where the source resumes after it."""

    profile: dict[str, Any]
    audience: str
    position: dict[str, Any]

    def wire(self, ts_ns: int) -> dict[str, Any]:
        """The enter event in ``AudienceEvent.to_wire`` form, without building the model.

        Every part is already valid (a selected audience, a whole timestamp, a dict), and a
        backfill makes a million of these: the worker validates each chunk as it loads it.
        """
        return {"audience": self.audience, "action": Action.ENTER.value, "ts_ns": ts_ns,
                "profile": self.profile}


def keep_fields(fields: Sequence[str], profile: dict[str, Any]) -> dict[str, Any]:
    """Only what the job reads (``ExportJob.lytics_fields``): email field, mapped fields."""
    return {f: profile[f] for f in fields if f in profile}


def segments_of(profile: dict[str, Any]) -> list[str]:
    """A profile's ``segments``: a JSON list, or a comma/semicolon/pipe list (CSV)."""
    raw = profile.get("segments")
    if isinstance(raw, list):
        return [str(s) for s in raw]
    if isinstance(raw, str):
        return [s.strip() for s in raw.replace(";", ",").replace("|", ",").split(",") if s.strip()]
    return []


def audience_for(job: ExportJob, profile: dict[str, Any]) -> str:
    """The first selected audience the profile is in, else the job's first audience."""
    return next((s for s in segments_of(profile) if job.selects(s)), job.audiences[0])
