"""How long to wait before retry number ``attempt``: capped exponential, full jitter.

The envelope is ``min(cap, base * 2**attempt)``: 1, 2, 4, 8 ... seconds up to ``cap``. With
jitter the wait is uniform in ``[0, envelope]`` ("full jitter"), which spreads a fleet's retries
after a shared failure instead of having every worker return at the same instant.
"""

from __future__ import annotations

import random

_MAX_DOUBLINGS = 1023  # 2.0**1024 overflows a float; any envelope is capped long before

# our own generator: jitter drawn on any thread never moves the global ``random`` state
_RNG = random.Random()


def backoff_seconds(
    attempt: int,
    *,
    base: float = 1.0,
    cap: float = 300.0,
    jitter: bool = True,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before retry ``attempt`` (0 for the first retry).

    Without jitter this is the envelope itself; with it, a uniform draw below the envelope
    from ``rng`` (the module's own generator when None).
    """
    if attempt < 0:
        raise ValueError(f"attempt must be 0 or more, not {attempt}")
    if base < 0 or cap < 0:
        raise ValueError(f"base and cap must not be negative (base={base}, cap={cap})")
    envelope = min(cap, base * 2.0 ** min(attempt, _MAX_DOUBLINGS))
    if not jitter:
        return envelope
    return (rng or _RNG).uniform(0.0, envelope)
