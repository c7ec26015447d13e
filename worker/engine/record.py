"""Turn audience events into desired-state marks; count who cannot be exported and why.

Omitted people, people with a field left out and people whose event time was corrected are
counted once each (see ``worker.state.counters``): the same body sent again, or a person in several
audiences, adds nothing. A person without a usable email is known by Lytics' ``_uid`` when the
event carries it, else by the email value as sent, else by the profile itself.

An event time further than ``MAX_EVENT_SKEW_SECONDS`` ahead of the receiver's clock (the
``received_ns`` the webhook stamps; the worker's own clock when a producer did not stamp one)
is moved back to that clock: the event still counts, but any later real event outranks it,
where a time like 2099 would have pinned the user forever. Each such person is counted once,
as ``clamped:future_ts``.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from core.events import Action, AudienceEvent
from core.jobs import LYTICS_UID_FIELD, ExportJob
from core.settings import load_settings
from worker.engine.normalize import map_profile
from worker.state import codes
from worker.state.counters import CLAMPED_PREFIX, JobCounters, person_digest
from worker.state.desired import DesiredState, Mark

ACTION_CODE = {Action.ENTER: codes.ENTER, Action.EXIT: codes.EXIT, Action.CHANGE: codes.CHANGE}
FUTURE_TS = "future_ts"  # reason: stamped too far ahead of the receiver's clock

People = dict[str, set[str]]  # reason → person digests


@dataclass(frozen=True)
class Recorded:
    marks: int
    changed: int
    omitted: dict[str, int]  # people in these events left out, by reason


@dataclass
class Marked:
    """What a batch of events comes to: marks, and who was left out or corrected, and why."""

    marks: list[Mark] = field(default_factory=list)
    omitted: People = field(default_factory=lambda: defaultdict(set))  # people left out
    dropped: People = field(default_factory=lambda: defaultdict(set))  # a field left out
    clamped: People = field(default_factory=lambda: defaultdict(set))  # time corrected


def identity(job: ExportJob, profile: dict[str, Any]) -> str:
    """Who an event without a usable email is about, as well as it can be told."""
    uid = profile.get(LYTICS_UID_FIELD)
    if isinstance(uid, str | int) and not isinstance(uid, bool) and str(uid):
        return f"uid:{uid}"
    raw = profile.get(job.email_field)
    if isinstance(raw, str) and raw.strip():
        return f"email:{raw.strip().lower()}"
    return "profile:" + orjson.dumps(profile, option=orjson.OPT_SORT_KEYS).decode()


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
        if mapped.email is None:
            # An exit with no usable email cannot name anyone to remove; an enter is not exported.
            out.omitted[mapped.omitted or "no_email"].add(
                person_digest(identity(job, event.profile)))
            continue
        person = person_digest(f"email:{mapped.email}")
        if not mapped.exported and event.action is not Action.EXIT:
            # no channel to subscribe on (consent): not exported; an exit still removes, as the
            # person may be on the list from before
            out.omitted[mapped.omitted or "no_email"].add(person)
            continue
        for reason in mapped.dropped:
            out.dropped[reason].add(person)
        ts_ns = event.ts_ns
        clamped = event_time(event, now, skew_ns)
        if clamped is not None:
            ts_ns = clamped
            out.clamped[FUTURE_TS].add(person)
        attributes = {k: v for k, v in mapped.attributes.items() if k != "email"}
        out.marks.append(
            Mark(mapped.email, event.audience, ACTION_CODE[event.action], ts_ns, attributes or None)
        )
    return out


def count_marked(counters: JobCounters, marked: Marked) -> None:
    """Count the people a batch left out or corrected, once each."""
    counters.omitted(marked.omitted)
    counters.dropped(marked.dropped)  # fields left out of an exported profile: not omitted
    counters.count_people({CLAMPED_PREFIX + r: people for r, people in marked.clamped.items()})


def record_events(
    job: ExportJob, state: DesiredState, counters: JobCounters, events: Sequence[AudienceEvent]
) -> Recorded:
    """Record events for ``job``; return how many users became pending."""
    marked = mark_events(job, events)
    changed = state.record(marked.marks, int(time.time() * 1000))
    count_marked(counters, marked)
    return Recorded(len(marked.marks), changed,
                    {reason: len(people) for reason, people in marked.omitted.items()})
