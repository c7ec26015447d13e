"""Time for the sandbox: real wall-clock time, optionally sped up.

At ``speed`` N every rate-limit window lasts N times less real time: the limiter
works on *virtual* seconds (``time.time() * speed``) so fixed windows stay aligned
the way Klaviyo aligns them (on whole seconds, minutes and days) at speed 1.
Everything reported to clients (``Retry-After``, ``RateLimit-Reset``) is in real seconds.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime


class Clock:
    """Virtual time for the rate limiter, real time for everything else."""

    def __init__(self, speed: float = 1.0) -> None:
        if not speed > 0:
            raise ValueError("speed must be > 0")
        self.speed = float(speed)

    def virtual(self) -> float:
        """Seconds since the epoch, sped up ``speed`` times."""
        return time.time() * self.speed

    def real(self, virtual_seconds: float) -> float:
        """How many real seconds a span of virtual seconds lasts."""
        return virtual_seconds / self.speed

    def header_seconds(self, real_seconds: float) -> str:
        """A header value: whole seconds (≥ 1) at speed 1, else fractional real seconds."""
        if self.speed == 1.0:
            return str(max(1, math.ceil(real_seconds - 1e-9)))
        return f"{max(real_seconds, 0.001):.3f}".rstrip("0").rstrip(".")


def iso(ts: float | None = None) -> str:
    """An RFC 3339 timestamp (UTC, microseconds) as Klaviyo prints them."""
    moment = datetime.fromtimestamp(time.time() if ts is None else ts, tz=UTC)
    return moment.isoformat(timespec="microseconds")
