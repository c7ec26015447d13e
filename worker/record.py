"""Turn audience events into desired-state marks; count who cannot be exported and why."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from worker.counters import JobCounters, counters_key
from worker.events import Action, AudienceEvent
from worker.jobs import ExportJob
from worker.normalize import map_profile
from worker.state import DesiredState, Mark

ACTION_CODE = {Action.ENTER: "E", Action.EXIT: "X", Action.CHANGE: "C"}


@dataclass(frozen=True)
class Recorded:
    marks: int
    changed: int
    omitted: dict[str, int]


def to_marks(
    job: ExportJob, events: Sequence[AudienceEvent]
) -> tuple[list[Mark], Counter[str], Counter[str]]:
    """Marks for exportable events, omitted users by reason, dropped fields by reason."""
    marks: list[Mark] = []
    omitted: Counter[str] = Counter()
    dropped: Counter[str] = Counter()
    for event in events:
        if not job.selects(event.audience):
            continue
        mapped = map_profile(job, event.profile)
        dropped.update(mapped.dropped)
        if mapped.email is None:
            # An exit with no usable email cannot name anyone to remove; an enter is not exported.
            omitted[mapped.omitted or "no_email"] += 1
            continue
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
    for reason, n in omitted.items():
        counters.omitted(reason, n)
    if dropped:  # fields left out of an exported profile: not an omitted user
        pipe = state.redis.pipeline(transaction=False)
        for reason, n in dropped.items():
            pipe.hincrby(counters_key(state.keys.prefix, job.id), f"dropped:{reason}", n)
        pipe.execute()
    return Recorded(len(marks), changed, dict(omitted))
