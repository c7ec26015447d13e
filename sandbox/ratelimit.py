"""Klaviyo's fixed-window rate limits, per account and per operation.

Each (account, operation) pair has three counters: burst (1 s), steady (60 s)
and, where the operation table sets one, daily (86,400 s). Windows are fixed; how
they align is not documented, so by default each account's windows start at a random
phase (``window_phase="random"``), or on the clock's whole seconds and minutes
(``"epoch"``). A refused call does not count. With ``foreign_share`` another
integration on the same account uses that share of every window, spread evenly over it,
as a second client with the same key would.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from contract.operations import Operation
from sandbox.clock import Clock
from sandbox.realism import Realism

BURST_SECONDS = 1
STEADY_SECONDS = 60
DAY_SECONDS = 86_400
SPANS = (BURST_SECONDS, STEADY_SECONDS, DAY_SECONDS)
NAMES = ("burst", "steady", "daily")


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

    def __init__(self, clock: Clock, realism: Realism | None = None,
                 rng: random.Random | None = None) -> None:
        self.clock = clock
        self.random_phase = realism is not None and realism.window_phase == "random"
        self.foreign_share = realism.foreign_share if realism is not None else 0.0
        self.rng = rng or random.Random()
        # (account, op) -> [burst window, count, steady window, count, day window, count]
        self._windows: dict[tuple[str, str], list[int]] = {}
        self._phases: dict[str, tuple[float, float, float]] = {}

    def reset(self) -> None:
        """Forget every counter (and every account's phase)."""
        self._windows.clear()
        self._phases.clear()

    def phase(self, account: str) -> tuple[float, float, float]:
        """Where this account's burst, steady and daily windows start (virtual seconds)."""
        found = self._phases.get(account)
        if found is None:
            found = (0.0, 0.0, 0.0)
            if self.random_phase:
                found = tuple(self.rng.uniform(0, span) for span in SPANS)  # type: ignore[assignment]
            self._phases[account] = found
        return found

    def take(self, account: str, op: Operation) -> Decision:
        """Count one call if every window has room; otherwise say how long to wait."""
        now = self.clock.virtual()
        phase = self.phase(account)
        idx = [int((now - phase[i]) // SPANS[i]) for i in range(3)]
        ends = [(idx[i] + 1) * SPANS[i] + phase[i] for i in range(3)]
        w = self._windows.get((account, op.name))
        if w is None:
            w = self._windows[(account, op.name)] = [idx[0], 0, idx[1], 0, idx[2], 0]
        for slot in range(3):
            if w[2 * slot] != idx[slot]:
                w[2 * slot], w[2 * slot + 1] = idx[slot], 0
        limits = (op.burst, op.steady, op.daily)
        used = [w[2 * i + 1] + self._foreign(limits[i], ends[i] - now, SPANS[i])
                for i in range(3)]
        steady_reset = self.clock.real(ends[1] - now)
        full = [(NAMES[i], limit, ends[i] - now) for i, limit in enumerate(limits)
                if limit is not None and used[i] >= limit]
        if full:
            name, limit, wait = max(full, key=lambda item: item[2])
            return Decision(False, op.steady, max(0, op.steady - used[1]), steady_reset,
                            self.clock.real(wait), name, limit)
        w[1] += 1
        w[3] += 1
        w[5] += 1
        return Decision(True, op.steady, max(0, op.steady - used[1] - 1), steady_reset)

    def _foreign(self, limit: int | None, left: float, span: float) -> int:
        """Calls the foreign client has made so far in a window with ``left`` to run."""
        if not self.foreign_share or limit is None:
            return 0
        return int(self.foreign_share * limit * (1.0 - left / span))
