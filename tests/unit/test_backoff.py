"""Retry back-off: capped exponential envelope, full jitter, pure."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.backoff import backoff_seconds


class TestEnvelope:
    def test_attempt_zero_waits_the_base(self) -> None:
        """The first retry waits exactly ``base`` seconds without jitter."""
        assert backoff_seconds(0, base=1.5, jitter=False) == 1.5

    def test_the_envelope_doubles_until_the_cap(self) -> None:
        """Without jitter the waits are 1, 2, 4, ... and then stay at the cap."""
        waits = [backoff_seconds(a, base=1.0, cap=20.0, jitter=False) for a in range(8)]
        assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 20.0, 20.0, 20.0]

    def test_huge_attempts_stay_at_the_cap(self) -> None:
        """Thousands of attempts neither overflow nor exceed the cap."""
        assert backoff_seconds(10_000, jitter=False) == 300.0

    @given(st.integers(min_value=0, max_value=2000), st.floats(min_value=0, max_value=100),
           st.floats(min_value=0, max_value=1e6))
    def test_the_envelope_never_shrinks_as_attempts_grow(
        self, attempt: int, base: float, cap: float
    ) -> None:
        """One more attempt never means a shorter envelope, and it never passes the cap."""
        now = backoff_seconds(attempt, base=base, cap=cap, jitter=False)
        later = backoff_seconds(attempt + 1, base=base, cap=cap, jitter=False)
        assert now <= later <= cap


class TestJitter:
    @given(st.integers(min_value=0, max_value=50), st.integers())
    def test_jittered_waits_stay_within_the_envelope(self, attempt: int, seed: int) -> None:
        """Full jitter draws between zero and the envelope."""
        wait = backoff_seconds(attempt, cap=60.0, rng=random.Random(seed))
        assert 0.0 <= wait <= backoff_seconds(attempt, cap=60.0, jitter=False)

    def test_the_same_seed_gives_the_same_waits(self) -> None:
        """With a seeded generator the function is deterministic, so callers can test it."""
        first = [backoff_seconds(a, rng=random.Random(7)) for a in range(5)]
        again = [backoff_seconds(a, rng=random.Random(7)) for a in range(5)]
        assert first == again

    def test_jitter_spreads_a_fleet(self) -> None:
        """A hundred workers retrying attempt 5 do not all come back at the same moment."""
        rng = random.Random(1)
        waits = {round(backoff_seconds(5, rng=rng), 3) for _ in range(100)}
        assert len(waits) > 90
        assert min(waits) < 8.0 < max(waits)


@pytest.mark.parametrize(
    ("attempt", "base", "cap"), [(-1, 1.0, 1.0), (0, -1.0, 1.0), (0, 1.0, -1.0)]
)
def test_nonsense_arguments_are_refused(attempt: int, base: float, cap: float) -> None:
    """A negative attempt, base or cap is a programming error."""
    with pytest.raises(ValueError, match="must"):
        backoff_seconds(attempt, base=base, cap=cap)
