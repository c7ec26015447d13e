"""The benchmark's yardstick: what Klaviyo's fixed windows admit in a stretch of wall time."""

from __future__ import annotations

import pytest

from bench.ceiling import BULK_IMPORT, SUBSCRIBE, Account, max_calls, max_profiles


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


FOREIGN = Account(foreign=0.15)


def test_another_client_leaves_us_what_it_has_not_used_by_our_last_call() -> None:
    """At 15 %, a whole minute leaves 750 - 112 = 638 subscribe calls (the burst 64 of 75 a
    second is not the bound over ten seconds or more); half a minute leaves 750 - 56."""
    assert max_calls(SUBSCRIBE, 0.0, 60.0, FOREIGN) == 638
    assert max_calls(SUBSCRIBE, 0.0, 30.0, FOREIGN) == 750 - 56
    assert max_calls(SUBSCRIBE, 0.0, 4.0, FOREIGN) == 4 * 64  # four whole burst seconds
    assert max_calls(BULK_IMPORT, 0.0, 60.0, FOREIGN) == 150 - 22
    assert max_calls(BULK_IMPORT, 0.0, 3.5, FOREIGN) == 3 * 9 + 10  # 10 - floor(0.75)


def test_the_windows_start_at_the_accounts_phase() -> None:
    """A steady phase of 20 s: [0, 60) touches the windows [-40, 20) and [20, 80)."""
    phased = Account(burst_phase=0.5, steady_phase=20.0)
    assert max_calls(SUBSCRIBE, 20.0, 80.0, phased) == 750
    assert max_calls(SUBSCRIBE, 0.0, 60.0, phased) == 1500
    # [20, 22) touches the burst windows starting at 19.5, 20.5 and 21.5
    assert max_calls(SUBSCRIBE, 20.0, 22.0, phased) == 3 * 75


def test_a_run_on_a_phased_shared_account_scores_against_what_was_left() -> None:
    """From the account's window start, 1,276 subscribes (2 x 638) fit in two windows."""
    acct = Account(burst_phase=0.3, steady_phase=41.7, foreign=0.15)
    assert max_profiles(SUBSCRIBE, 41.7, 41.7 + 119.9, acct) == 1276 * 1000
