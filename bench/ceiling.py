"""What Klaviyo's fixed windows allow in a given stretch of wall-clock time.

Klaviyo (and the sandbox) count calls in fixed windows: a burst window of one second and a
steady window of one minute, both enforced at once, each starting at the account's own
phase (:class:`Account`; on the clock's seconds and minutes when the phase is 0). Over
``[start, end)`` the most calls we can make is, for every minute window the run touches, the
smaller of the steady limit and the burst limit times the number of one-second windows it
touches in that minute.

Another integration on the account (``foreign``, the sandbox's ``foreign_share``) spends
that share of every window, spread evenly over it: by a moment ``x`` of the way through a
window it has used ``floor(foreign * limit * x)``, so a window we use until ``x`` leaves us
``limit - floor(foreign * limit * x)`` (a whole window: 638 of 750, 64 of 75, 9 of 10 at 15 %).
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


@dataclass(frozen=True)
class Account:
    """Where an account's windows start (seconds past the epoch's) and the share of every
    window another client uses."""

    burst_phase: float = 0.0
    steady_phase: float = 0.0
    foreign: float = 0.0

    def left(self, limit: int, elapsed: float) -> int:
        """What a window of ``limit`` leaves us when used until ``elapsed`` (0..1) of it."""
        return limit - math.floor(self.foreign * limit * min(1.0, elapsed) + 1e-9)


EPOCH = Account()  # windows on the clock, no other client

SUBSCRIBE = Limits("subscribe", 75, 750, 1000)
BULK_IMPORT = Limits("bulk import (force add)", 10, 150, 10_000)
PROFILE_IMPORT = Limits("profile-import", 75, 750, 1)


def max_calls(limits: Limits, start: float, end: float, account: Account = EPOCH) -> int:
    """Most calls the fixed windows leave us in ``[start, end)`` (epoch seconds)."""
    if end <= start:
        return 0
    total = 0
    minute = math.floor((start - account.steady_phase) / 60) * 60 + account.steady_phase
    while minute < end:
        lo, hi = max(start, minute), min(end, minute + 60)
        steady = account.left(limits.steady, (hi - minute) / 60)
        total += min(steady, _burst_calls(limits.burst, lo, hi, account))
        minute += 60
    return total


def _burst_calls(burst: int, lo: float, hi: float, account: Account) -> int:
    """What the one-second windows touched by ``[lo, hi)`` leave us: whole ones, and the last
    one until ``hi``."""
    first = math.floor(lo - account.burst_phase)
    last = max(first, math.ceil(hi - account.burst_phase) - 1)
    whole = (last - first) * account.left(burst, 1.0)
    return whole + account.left(burst, hi - account.burst_phase - last)


def max_profiles(limits: Limits, start: float, end: float, account: Account = EPOCH) -> int:
    return max_calls(limits, start, end, account) * limits.items
