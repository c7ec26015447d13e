"""Injected failures: errors, latency, dropped connections, 429 storms, revoked keys, and
a fronting proxy's HTML 403 challenge page (``challenge_rate``).

``POST /_sandbox/faults`` replaces the configuration; ``DELETE`` clears it. Faults
apply to Klaviyo operations (and to the Lytics scan only when ``only_operations``
names ``lytics_segment_scan``). Storms last ``seconds`` of real time.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

LYTICS_SCAN = "lytics_segment_scan"


@dataclass(frozen=True)
class Action:
    """What to do instead of serving the call."""

    kind: str  # "drop", "auth", "storm", "challenge" or "error"
    status: int = 0
    retry_after: float = 0.0


@dataclass
class Faults:
    """The current fault configuration."""

    error_rate: float = 0.0
    statuses: tuple[int, ...] = (500, 502, 503)
    latency_ms: float = 0.0
    drop_rate: float = 0.0
    challenge_rate: float = 0.0
    storm_until: float = 0.0  # time.monotonic() deadline
    storm_retry_after: float = 1.0
    auth_fail: bool = False
    only_operations: frozenset[str] | None = None
    rng: random.Random = field(default_factory=random.Random, repr=False)

    @classmethod
    def parse(cls, body: dict[str, Any]) -> Faults:
        """Build from the admin JSON; ValueError names a bad field."""
        faults = cls(error_rate=_rate(body, "error_rate"), drop_rate=_rate(body, "drop_rate"),
                     challenge_rate=_rate(body, "challenge_rate"),
                     latency_ms=_number(body, "latency_ms", 0.0),
                     auth_fail=bool(body.get("auth_fail", False)))
        if "statuses" in body:
            statuses = body["statuses"]
            if not isinstance(statuses, list) or not statuses or not all(
                    isinstance(s, int) and 400 <= s <= 599 for s in statuses):
                raise ValueError("statuses must be a non-empty list of HTTP error statuses")
            faults.statuses = tuple(statuses)
        storm = body.get("storm")
        if storm is not None:
            if not isinstance(storm, dict):
                raise ValueError("storm must be an object {seconds, retry_after}")
            faults.storm_until = time.monotonic() + _number(storm, "seconds", 0.0)
            faults.storm_retry_after = _number(storm, "retry_after", 1.0)
        only = body.get("only_operations")
        if only is not None:
            if not isinstance(only, list) or not all(isinstance(o, str) for o in only):
                raise ValueError("only_operations must be a list of operation names")
            faults.only_operations = frozenset(only)
        return faults

    def applies(self, op_name: str) -> bool:
        """Whether faults touch this operation."""
        if self.only_operations is not None:
            return op_name in self.only_operations
        return op_name != LYTICS_SCAN

    def decide(self, op_name: str) -> tuple[float, Action | None]:
        """(latency in seconds, action or None) for one call."""
        if not self.applies(op_name):
            return 0.0, None
        return self.latency_ms / 1000.0, self._action()

    def _action(self) -> Action | None:
        if self.drop_rate and self.rng.random() < self.drop_rate:
            return Action("drop")
        if self.auth_fail:
            return Action("auth", 401)
        if self.storm_until and time.monotonic() < self.storm_until:
            return Action("storm", 429, self.storm_retry_after)
        if self.challenge_rate and self.rng.random() < self.challenge_rate:
            return Action("challenge", 403)
        if self.error_rate and self.rng.random() < self.error_rate:
            return Action("error", self.rng.choice(self.statuses))
        return None

    def describe(self) -> dict[str, Any]:
        """The configuration as JSON."""
        left = max(0.0, self.storm_until - time.monotonic())
        return {"error_rate": self.error_rate, "statuses": list(self.statuses),
                "latency_ms": self.latency_ms, "drop_rate": self.drop_rate,
                "challenge_rate": self.challenge_rate,
                "storm": {"seconds_left": round(left, 3), "retry_after": self.storm_retry_after}
                if left else None,
                "auth_fail": self.auth_fail,
                "only_operations": sorted(self.only_operations) if self.only_operations
                is not None else None}


def _number(body: dict[str, Any], name: str, default: float) -> float:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{name} must be a number ≥ 0")
    return float(value)


def _rate(body: dict[str, Any], name: str) -> float:
    value = _number(body, name, 0.0)
    if value > 1:
        raise ValueError(f"{name} must be between 0 and 1")
    return value
