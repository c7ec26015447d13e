"""One person as a source yields them, and the chunk row the backfill makes of them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from core.jobs import ExportJob


@dataclass(frozen=True, slots=True)
class Member:
    """A profile (only the job's fields), every selected audience it is in, where the source
    resumes after it, and its own snapshot time (None: the run's).

    A member with ``omitted`` set is a person the source leaves out (no audience of the job,
    an unusable timestamp): it is counted, never sent.
    """

    profile: dict[str, Any]
    audiences: tuple[str, ...]
    position: dict[str, Any]
    ts_ns: int | None = None
    omitted: str | None = None

    def wire(self, run_ts_ns: int) -> dict[str, Any]:
        """The ``ChunkRow`` dict (``core.chunks``): an enter in the first
        audience, ``also`` the others, without building the model.

        Every part is already valid (selected audiences, a whole timestamp, a dict), and a
        backfill makes a million of these: the worker validates each chunk as it loads it.
        """
        row: dict[str, Any] = {"audience": self.audiences[0],
                               "ts_ns": run_ts_ns if self.ts_ns is None else self.ts_ns,
                               "profile": self.profile}
        if len(self.audiences) > 1:
            row["also"] = self.audiences[1:]
        return row


def keep_fields(fields: Sequence[str], profile: dict[str, Any]) -> dict[str, Any]:
    """Only what the job reads (``ExportJob.lytics_fields``): email field, mapped fields."""
    return {f: profile[f] for f in fields if f in profile}


def segments_of(profile: dict[str, Any]) -> list[str] | None:
    """A profile's ``segments``: a JSON list, or a comma/semicolon/pipe list (CSV); None when
    the profile has no ``segments`` field (or it is null)."""
    raw = profile.get("segments")
    if raw is None:
        return None
    if isinstance(raw, list):
        return [str(s) for s in raw]
    if isinstance(raw, str):
        return [s.strip() for s in raw.replace(";", ",").replace("|", ",").split(",") if s.strip()]
    return []


def audiences_for(job: ExportJob, profile: dict[str, Any]) -> tuple[str, ...]:
    """Every selected audience the profile's ``segments`` names (empty: none of them).

    A profile without ``segments`` says only that it belongs on the list: it is placed in all
    of the job's audiences, so that no single exit removes someone the source said belongs.
    """
    segments = segments_of(profile)
    if segments is None:
        return job.audiences
    return tuple(dict.fromkeys(s for s in segments if job.selects(s)))
