"""Turn audience events into desired-state marks; count who cannot be exported and why.

An event time further than ``MAX_EVENT_SKEW_SECONDS`` ahead of the receiver's clock (the
``received_ns`` the webhook stamps; the worker's own clock when a producer did not stamp one)
is moved back to that clock: the event still counts, but any later real event outranks it,
where a time like 2099 would have pinned the user forever. Each such user is counted once,
as ``clamped:future_ts``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from worker.counters import CLAMPED_PREFIX, JobCounters, counters_key
from worker.events import Action, AudienceEvent
from worker.jobs import ExportJob
from worker.normalize import map_profile
from worker.settings import load_settings
from worker.state import DesiredState, Mark

ACTION_CODE = {Action.ENTER: "E", Action.EXIT: "X", Action.CHANGE: "C"}
FUTURE_TS = "future_ts"  # reason: stamped too far ahead of the receiver's clock


@dataclass(frozen=True)
class Recorded:
    marks: int
    changed: int
    omitted: dict[str, int]


@dataclass
class Marked:
    """What a batch of events comes to: marks, and who was left out or corrected, and why."""

    marks: list[Mark] = field(default_factory=list)
    omitted: Counter[str] = field(default_factory=Counter)  # users left out, by reason
    dropped: Counter[str] = field(default_factory=Counter)  # fields left out, by reason
    clamped: dict[str, set[str]] = field(default_factory=dict)  # reason → users


def event_time(event: AudienceEvent, now_ns: int, max_skew_ns: int) -> int | None:
    """The receive time when ``event`` is stamped more than ``max_skew_ns`` ahead of it, else
    None (its own time stands). The receiver's clock counts; the worker's when none was sent,
    or when the receiver's is itself ahead of the worker's."""
    reference = now_ns if event.received_ns is None else min(event.received_ns, now_ns)
    return reference if event.ts_ns > reference + max_skew_ns else None


def mark_events(
    job: ExportJob,
    events: Sequence[AudienceEvent],
    *,
    now_ns: int | None = None,
    max_skew_seconds: float | None = None,
) -> Marked:
    """Marks for exportable events, with their times checked against the receiver's clock."""
    now = time.time_ns() if now_ns is None else now_ns
    skew = load_settings().max_event_skew_seconds if max_skew_seconds is None else max_skew_seconds
    skew_ns = int(skew * 1_000_000_000)
    out = Marked()
    for event in events:
        if not job.selects(event.audience):
            continue
        mapped = map_profile(job, event.profile)
        out.dropped.update(mapped.dropped)
        if mapped.email is None:
            # An exit with no usable email cannot name anyone to remove; an enter is not exported.
            out.omitted[mapped.omitted or "no_email"] += 1
            continue
        ts_ns = event.ts_ns
        clamped = event_time(event, now, skew_ns)
        if clamped is not None:
            ts_ns = clamped
            out.clamped.setdefault(FUTURE_TS, set()).add(mapped.email)
        attributes = {k: v for k, v in mapped.attributes.items() if k != "email"}
        out.marks.append(
            Mark(mapped.email, event.audience, ACTION_CODE[event.action], ts_ns, attributes or None)
        )
    return out


def to_marks(
    job: ExportJob, events: Sequence[AudienceEvent]
) -> tuple[list[Mark], Counter[str], Counter[str]]:
    """Marks for exportable events, omitted users by reason, dropped fields by reason."""
    marked = mark_events(job, events)
    return marked.marks, marked.omitted, marked.dropped


def record_events(
    job: ExportJob, state: DesiredState, counters: JobCounters, events: Sequence[AudienceEvent]
) -> Recorded:
    """Record events for ``job``; return how many users became pending."""
    marked = mark_events(job, events)
    changed = state.record(marked.marks, int(time.time() * 1000))
    for reason, n in marked.omitted.items():
        counters.omitted(reason, n)
    for reason, emails in marked.clamped.items():
        state.count_once(CLAMPED_PREFIX + reason, sorted(emails))
    if marked.dropped:  # fields left out of an exported profile: not an omitted user
        pipe = state.redis.pipeline(transaction=False)
        for reason, n in marked.dropped.items():
            pipe.hincrby(counters_key(state.keys.prefix, job.id), f"dropped:{reason}", n)
        pipe.execute()
    return Recorded(len(marked.marks), changed, dict(marked.omitted))
