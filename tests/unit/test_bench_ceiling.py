"""The benchmark's yardstick: what Klaviyo's fixed windows admit in a stretch of wall time."""

from __future__ import annotations

import pytest

from bench.ceiling import BULK_IMPORT, SUBSCRIBE, max_calls, max_profiles


@pytest.mark.parametrize(
    ("start", "end", "calls"),
    [
        (0.0, 9.5, 750),  # ten burst seconds of 75 reach the minute's 750
        (0.0, 4.2, 375),  # five burst seconds touched
        (0.6, 94.4, 1500),  # two whole minute windows
        (0.6, 121.5, 1650),  # 1.5 s into a third window: two burst seconds charged
        (59.5, 60.5, 150),  # one second across a minute edge touches two burst windows
        (0.0, 0.0, 0),
    ],
)
def test_subscribe_windows(start: float, end: float, calls: int) -> None:
    """Every minute touched gives the lesser of 750 calls and 75 per second touched."""
    assert max_calls(SUBSCRIBE, start, end) == calls


def test_a_force_add_run_that_spills_into_a_second_minute_is_charged_its_seconds() -> None:
    """15.6 s into a second minute touches 16 burst seconds: 160 imports, capped at 150."""
    assert max_calls(BULK_IMPORT, 0.3, 75.6) == 150 + 150
    assert max_calls(BULK_IMPORT, 0.3, 61.2) == 150 + 20
    assert 1_500_000 / max_profiles(BULK_IMPORT, 0.3, 59.9) == 1.0
