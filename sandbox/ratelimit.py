"""Klaviyo's fixed-window rate limits, per account and per operation.

Each (account, operation) pair has three counters: burst (1 s), steady (60 s)
and, where the operation table sets one, daily (86,400 s). Windows are fixed and
aligned on the virtual clock, like Klaviyo's. A refused call does not count.
"""

from __future__ import annotations

from dataclasses import dataclass

from contract.operations import Operation
from sandbox.clock import Clock

BURST_SECONDS = 1
STEADY_SECONDS = 60
DAY_SECONDS = 86_400


@dataclass(frozen=True)
class Decision:
    """The limiter's answer; times are in real seconds."""

    allowed: bool
    limit: int  # the steady limit
    remaining: int  # steady calls left in this window
    reset: float  # until the steady window ends
    retry_after: float = 0.0
    exceeded: str | None = None  # "burst", "steady" or "daily"
    exceeded_limit: int = 0


class Limiter:
    """Fixed-window counters; the caller holds the sandbox lock."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        # (account, op) -> [burst window, count, steady window, count, day window, count]
        self._windows: dict[tuple[str, str], list[int]] = {}

    def reset(self) -> None:
        """Forget every counter."""
        self._windows.clear()

    def take(self, account: str, op: Operation) -> Decision:
        """Count one call if every window has room; otherwise say how long to wait."""
        now = self.clock.virtual()
        idx = (int(now // BURST_SECONDS), int(now // STEADY_SECONDS), int(now // DAY_SECONDS))
        w = self._windows.get((account, op.name))
        if w is None:
            w = self._windows[(account, op.name)] = [idx[0], 0, idx[1], 0, idx[2], 0]
        for slot in range(3):
            if w[2 * slot] != idx[slot]:
                w[2 * slot], w[2 * slot + 1] = idx[slot], 0
        steady_reset = self.clock.real((idx[1] + 1) * STEADY_SECONDS - now)
        over = self._over(w, op, idx, now)
        if over is not None:
            name, limit, wait = over
            return Decision(False, op.steady, max(0, op.steady - w[3]), steady_reset,
                            self.clock.real(wait), name, limit)
        w[1] += 1
        w[3] += 1
        w[5] += 1
        return Decision(True, op.steady, op.steady - w[3], steady_reset)

    @staticmethod
    def _over(w: list[int], op: Operation, idx: tuple[int, int, int],
              now: float) -> tuple[str, int, float] | None:
        """The window that is full and ends last, as (name, limit, virtual seconds to wait)."""
        full: list[tuple[str, int, float]] = []
        if w[1] >= op.burst:
            full.append(("burst", op.burst, (idx[0] + 1) * BURST_SECONDS - now))
        if w[3] >= op.steady:
            full.append(("steady", op.steady, (idx[1] + 1) * STEADY_SECONDS - now))
        if op.daily is not None and w[5] >= op.daily:
            full.append(("daily", op.daily, (idx[2] + 1) * DAY_SECONDS - now))
        return max(full, key=lambda item: item[2]) if full else None
