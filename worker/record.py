"""Turn audience events into desired-state marks; count who cannot be exported and why.

Omitted people and people with a field left out are counted once each (see
``worker.counters``): the same body sent again, or a person in several audiences, adds nothing.
A person without a usable email is known by Lytics' ``_uid`` when the event carries it, else by
the email value as sent, else by the profile itself.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from worker.counters import JobCounters, person_digest
from worker.events import Action, AudienceEvent
from worker.jobs import LYTICS_UID_FIELD, ExportJob
from worker.normalize import map_profile
from worker.state import DesiredState, Mark

People = dict[str, set[str]]  # reason → person digests

ACTION_CODE = {Action.ENTER: "E", Action.EXIT: "X", Action.CHANGE: "C"}


@dataclass(frozen=True)
class Recorded:
    marks: int
    changed: int
    omitted: dict[str, int]  # people in these events left out, by reason


def identity(job: ExportJob, profile: dict[str, Any]) -> str:
    """Who an event without a usable email is about, as well as it can be told."""
    uid = profile.get(LYTICS_UID_FIELD)
    if isinstance(uid, str | int) and not isinstance(uid, bool) and str(uid):
        return f"uid:{uid}"
    raw = profile.get(job.email_field)
    if isinstance(raw, str) and raw.strip():
        return f"email:{raw.strip().lower()}"
    return "profile:" + orjson.dumps(profile, option=orjson.OPT_SORT_KEYS).decode()


def to_marks(job: ExportJob, events: Sequence[AudienceEvent]) -> tuple[list[Mark], People, People]:
    """Marks for exportable events; omitted people and people with dropped fields, by reason."""
    marks: list[Mark] = []
    omitted: People = defaultdict(set)
    dropped: People = defaultdict(set)
    for event in events:
        if not job.selects(event.audience):
            continue
        mapped = map_profile(job, event.profile)
        if mapped.email is None:
            # An exit with no usable email cannot name anyone to remove; an enter is not exported.
            omitted[mapped.omitted or "no_email"].add(person_digest(identity(job, event.profile)))
            continue
        for reason in mapped.dropped:
            dropped[reason].add(person_digest(f"email:{mapped.email}"))
        attributes = {k: v for k, v in mapped.attributes.items() if k != "email"}
        marks.append(
            Mark(
                mapped.email,
                event.audience,
                ACTION_CODE[event.action],
                event.ts_ns,
                attributes or None,
            )
        )
    return marks, omitted, dropped


def record_events(
    job: ExportJob, state: DesiredState, counters: JobCounters, events: Sequence[AudienceEvent]
) -> Recorded:
    """Record events for ``job``; return how many users became pending."""
    marks, omitted, dropped = to_marks(job, events)
    changed = state.record(marks, int(time.time() * 1000))
    counters.omitted(omitted)
    counters.dropped(dropped)  # fields left out of an exported profile: not an omitted user
    return Recorded(len(marks), changed, {reason: len(p) for reason, p in omitted.items()})
