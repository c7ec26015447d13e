"""What Klaviyo's fixed windows allow in a given stretch of wall-clock time.

Klaviyo (and the sandbox) count calls in fixed windows aligned on the clock: a burst
window of one second and a steady window of one minute, both enforced at once. Over
``[start, end)`` the most calls any client can make is, for every minute window the run
touches, the smaller of the steady limit and the burst limit times the number of
one-second windows it touches in that minute.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    name: str
    burst: int  # calls per 1 s window
    steady: int  # calls per 60 s window
    items: int  # most profiles per call

    @property
    def per_minute(self) -> int:
        """The headline ceiling: profiles per minute."""
        return self.steady * self.items


SUBSCRIBE = Limits("subscribe", 75, 750, 1000)
BULK_IMPORT = Limits("bulk import (force add)", 10, 150, 10_000)
PROFILE_IMPORT = Limits("profile-import", 75, 750, 1)


def max_calls(limits: Limits, start: float, end: float) -> int:
    """Most calls the fixed windows admit in ``[start, end)`` (epoch seconds)."""
    if end <= start:
        return 0
    total = 0
    minute = math.floor(start / 60) * 60
    while minute < end:
        lo, hi = max(start, minute), min(end, minute + 60)
        seconds = max(1, math.ceil(hi) - math.floor(lo))
        total += min(limits.steady, limits.burst * seconds)
        minute += 60
    return total


def max_profiles(limits: Limits, start: float, end: float) -> int:
    return max_calls(limits, start, end) * limits.items
