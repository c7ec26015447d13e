"""One audience member as a source yields it, and the event the backfill makes of it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from worker.events import Action, AudienceEvent
from worker.jobs import ExportJob


@dataclass(frozen=True)
class Member:
    """A profile (only the job's fields), its audience, and where the source resumes after it."""

    profile: dict[str, Any]
    audience: str
    position: dict[str, Any]

    def event(self, ts_ns: int) -> AudienceEvent:
        return AudienceEvent(audience=self.audience, action=Action.ENTER, ts_ns=ts_ns,
                             profile=self.profile)


def keep_fields(job: ExportJob, profile: dict[str, Any]) -> dict[str, Any]:
    """Only what the job reads: its email field and its mapped fields."""
    return {f: profile[f] for f in job.lytics_fields() if f in profile}


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
