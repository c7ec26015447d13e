"""The time a backfill's data describes: every enter it makes carries it, not the run's start.

The engine keeps the newest event per user and audience, so an exit recorded after the
snapshot wins over the backfill's enter, and one recorded before it loses. A time in the
future would outrank every real exit to come: beyond ``MAX_EVENT_SKEW_SECONDS`` (the same
allowance the engine gives live events) it is refused.
"""

from __future__ import annotations

import time
from decimal import Decimal, InvalidOperation

from core.settings import load_settings
from producers.lytics import parse_timestamp

_MS_FROM = 100_000_000_000  # a bare number at least this big is milliseconds (year 5138 in s)


class SnapshotError(ValueError):
    """A snapshot time that cannot be used; the message says why."""


def parse_as_of(text: str, now_ns: int | None = None) -> int:
    """``--as-of``: RFC 3339, not in the future (beyond the skew) → nanoseconds."""
    try:
        ts_ns = parse_timestamp(text.strip())
    except ValueError as exc:
        raise SnapshotError(f"--as-of {text!r}: {exc} (e.g. 2024-05-01T12:00:00Z)") from None
    _not_future(ts_ns, now_ns, f"--as-of {text!r}")
    return ts_ns


def row_timestamp(value: object, now_ns: int | None = None) -> int:
    """A row's own snapshot time: RFC 3339, or seconds or milliseconds since the epoch."""
    number = _number(value)
    if number is None and isinstance(value, str):
        ts_ns = parse_timestamp(value.strip())
    elif number is not None and number.is_finite() and number >= 0:
        ts_ns = int(number * (10**6 if number >= _MS_FROM else 10**9))
    else:
        raise SnapshotError("not a timestamp")
    _not_future(ts_ns, now_ns, "timestamp")
    return ts_ns


def _number(value: object) -> Decimal | None:
    """An exact number (so milliseconds stay whole), None when ``value`` is not one."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        return Decimal(str(value).strip())
    except InvalidOperation:
        return None


def _not_future(ts_ns: int, now_ns: int | None, what: str) -> None:
    now = time.time_ns() if now_ns is None else now_ns
    skew = load_settings().max_event_skew_seconds  # the exporting machine's clock may differ
    if ts_ns > now + int(skew * 1_000_000_000):
        raise SnapshotError(f"{what} is in the future (more than {skew:g} s ahead of this "
                            "machine's clock, MAX_EVENT_SKEW_SECONDS)")
