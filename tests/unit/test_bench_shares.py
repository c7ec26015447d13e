"""The two-jobs row's yardstick: each job's share of what each whole window of the account
added while both ran."""

from __future__ import annotations

from bench.ceiling import Account
from bench.shared import window_shares


def test_each_whole_window_counts_what_it_added_and_the_partial_ones_do_not() -> None:
    """Windows at a 10 s phase: [10, 70) and [70, 130) are whole before 135; [130, 190) is not.
    The first job took 30 of the first window's 40 and 10 of the second's 40."""
    samples = [(5.0, 0, 0), (10.0, 1, 1), (70.0, 31, 11), (100.0, 35, 25), (130.0, 41, 41),
               (135.0, 50, 42)]
    assert window_shares(samples, Account(steady_phase=10.0), until=135.0) == [0.75, 0.25]


def test_no_whole_window_no_share() -> None:
    assert window_shares([(0.0, 0, 0), (30.0, 5, 5)], Account(), until=30.0) == []
    assert window_shares([], Account(), until=100.0) == []
