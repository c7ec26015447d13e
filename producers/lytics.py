"""Lytics audience-trigger payloads → :class:`AudienceEvent` values (reference: lytics.md §1).

Accepted shapes, and arrays of up to :data:`MAX_BODIES` of them (shapes may mix):

- the default body ``{"id", "data": {..., "segment_events": [...]}, "meta": {"timestamp"}}``;
- the CloudEvents envelope ``{"specversion", "type", "time", "data"}`` (no ``meta``).

Every ``data.segment_events[]`` entry is one event. Its time is the key named after
the event (``enter``/``exit``), else ``meta.timestamp``, else the CloudEvents ``time``.
A body parses completely or raises :class:`PayloadError`, whose message names the
place (``body[3].data.segment_events[0].enter: not an RFC 3339 timestamp``).

Every event carries the receiver's clock (``received_ns``): the worker moves an event time
stamped too far ahead of it back to that moment (see ``worker.engine.record``), so the time the
receiver saw, not the worker's, is what counts.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import date
from typing import Any

import orjson

from core.events import Action, AudienceEvent
from core.jobs import ExportJob
from core.redact import show

MAX_BODIES = 1000
MAX_DEPTH = 32  # nesting allowed in a profile value: the Celery message must stay encodable
ACTIONS = {action.value: action for action in Action}
_EPOCH_DAY = date(1970, 1, 1).toordinal()
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)


class PayloadError(ValueError):
    """The body is not a Lytics payload; the message says where and why (emails masked)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class ParsedBody:
    """What one request body holds for one job."""

    events: list[AudienceEvent]
    ignored: int  # segment events for audiences the job does not select
    bodies: int  # Lytics bodies in the request (1, or the array's length)


def parse_timestamp(text: object) -> int:
    """RFC 3339 (fraction up to nanoseconds, ``Z`` or ``±hh:mm``) → nanoseconds since the epoch."""
    match = _RFC3339.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError("not an RFC 3339 timestamp")
    year, month, day, hour, minute, second, frac, _, sign, off_h, off_m = match.groups()
    hh, mm, ss, oh, om = int(hour), int(minute), int(second), int(off_h or 0), int(off_m or 0)
    if hh > 23 or mm > 59 or ss > 60 or oh > 23 or om > 59:
        raise ValueError("not an RFC 3339 timestamp")
    try:
        days = date(int(year), int(month), int(day)).toordinal() - _EPOCH_DAY
    except ValueError:
        raise ValueError("not an RFC 3339 timestamp") from None
    offset = (oh * 3600 + om * 60) * (-1 if sign == "-" else 1)
    seconds = days * 86400 + hh * 3600 + mm * 60 + ss - offset
    ts_ns = seconds * 1_000_000_000 + int(((frac or "") + "000000000")[:9])
    if ts_ns < 0:
        raise ValueError("a timestamp before 1970")
    return ts_ns


def parse_json(raw: bytes) -> object:
    """Decode a request body; invalid JSON is a :class:`PayloadError`."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise PayloadError(f"body: not valid JSON ({exc})") from None


def parse_body(body: object, job: ExportJob, received_ns: int | None = None) -> ParsedBody:
    """Turn a decoded webhook body into ``job``'s events; all or nothing.

    Each event is stamped ``received_ns`` (default: now), the receiver's clock.
    """
    events: list[AudienceEvent] = []
    received = time.time_ns() if received_ns is None else received_ns
    if isinstance(body, dict):
        ignored = _parse_one(body, "body", job, events, received)
        return ParsedBody(events=events, ignored=ignored, bodies=1)
    if not isinstance(body, list):
        raise PayloadError(f"body: expected an object or an array of objects, got {_kind(body)}")
    if len(body) > MAX_BODIES:
        raise PayloadError(f"body: {len(body):,} bodies exceed the limit of {MAX_BODIES:,}")
    ignored = 0
    for index, item in enumerate(body):
        where = f"body[{index}]"
        if not isinstance(item, dict):
            raise PayloadError(f"{where}: expected an object, got {_kind(item)}")
        ignored += _parse_one(item, where, job, events, received)
    return ParsedBody(events=events, ignored=ignored, bodies=len(body))


def _parse_one(
    body: dict[str, Any], where: str, job: ExportJob, out: list[AudienceEvent], received: int
) -> int:
    """Append one body's selected events to ``out``; return how many were ignored."""
    fallback = _fallback_time(body, where)
    data = body.get("data")
    if not isinstance(data, dict):
        raise PayloadError(f"{where}.data: {_missing_or(data, 'an object')}")
    entries = data.get("segment_events")
    if not isinstance(entries, list):
        hint = " (add segment_events to the Lytics job's export fields)" if entries is None else ""
        raise PayloadError(f"{where}.data.segment_events: {_missing_or(entries, 'an array')}{hint}")
    profile = {f: data[f] for f in job.lytics_fields() if f in data}
    for field, value in profile.items():
        if isinstance(value, dict | list) and _too_deep(value):
            raise PayloadError(f"{where}.data.{field}: nested deeper than {MAX_DEPTH} levels")
    ignored = 0
    for index, entry in enumerate(entries):
        at = f"{where}.data.segment_events[{index}]"
        action, ts_ns, audience = _parse_entry(entry, at, fallback, job)
        if audience is None:
            ignored += 1
            continue
        out.append(AudienceEvent(audience=audience, action=action, ts_ns=ts_ns, profile=profile,
                                 received_ns=received))
    return ignored


def _fallback_time(body: dict[str, Any], where: str) -> int | None:
    """The body-level time: ``meta.timestamp``, else CloudEvents ``time``, else None."""
    if "specversion" in body:
        if not isinstance(body["specversion"], str):
            raise PayloadError(f"{where}.specversion: expected a string")
        return _time_at(body, "time", f"{where}.time")
    meta = body.get("meta")
    if meta is None:
        return None
    if not isinstance(meta, dict):
        raise PayloadError(f"{where}.meta: expected an object, got {_kind(meta)}")
    return _time_at(meta, "timestamp", f"{where}.meta.timestamp")


def _parse_entry(
    entry: object, at: str, fallback: int | None, job: ExportJob
) -> tuple[Action, int, str | None]:
    """One ``segment_events[]`` entry → (action, time, the job's audience name or None)."""
    if not isinstance(entry, dict):
        raise PayloadError(f"{at}: expected an object, got {_kind(entry)}")
    name = entry.get("event")
    action = ACTIONS.get(name) if isinstance(name, str) else None
    if action is None:
        raise PayloadError(f"{at}.event: {_missing_or_unknown(name)} (enter, exit or change)")
    ts_ns = _time_at(entry, action.value, f"{at}.{action.value}")
    if ts_ns is None:
        ts_ns = fallback
    if ts_ns is None:
        raise PayloadError(f"{at}: no timestamp (no {name!r} key, no meta.timestamp, no time)")
    return action, ts_ns, _audience(entry, at, job)


def _audience(entry: dict[str, Any], at: str, job: ExportJob) -> str | None:
    """The job's own name for the entry's audience: segment id first, then slug."""
    segment_id, slug = entry.get("id"), entry.get("slug")
    for key, value in (("id", segment_id), ("slug", slug)):
        if value is not None and (not isinstance(value, str) or not value):
            raise PayloadError(f"{at}.{key}: expected a non-empty string, got {show(value)}")
    if segment_id is None and slug is None:
        raise PayloadError(f"{at}: names no audience (no id or slug)")
    if segment_id is not None and job.selects(segment_id):
        return str(segment_id)
    if slug is not None and job.selects(slug):
        return str(slug)
    return None


def _time_at(holder: dict[str, Any], key: str, at: str) -> int | None:
    """Parse ``holder[key]`` as a timestamp when present; None when absent."""
    value = holder.get(key)
    if value is None:
        return None
    try:
        return parse_timestamp(value)
    except ValueError as exc:
        raise PayloadError(f"{at}: {exc}") from None


def _too_deep(value: dict[str, Any] | list[Any]) -> bool:
    """True when ``value`` holds containers more than MAX_DEPTH levels down."""
    level: list[Any] = [value]
    for _ in range(MAX_DEPTH):
        level = [child for parent in level
                 for child in (parent.values() if isinstance(parent, dict) else parent)
                 if isinstance(child, dict | list)]
        if not level:
            return False
    return True


def _kind(value: object) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number",
            float: "number"}.get(type(value), "null")


def _missing_or(value: object, expected: str) -> str:
    return "missing" if value is None else f"expected {expected}, got {_kind(value)}"


def _missing_or_unknown(name: object) -> str:
    return "missing" if name is None else f"unknown event {show(name)}"
