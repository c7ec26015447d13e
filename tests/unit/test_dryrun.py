"""The dry run's arithmetic: the time Klaviyo's limits imply for a start's calls."""

from __future__ import annotations

import pytest

from worker.engine.dryrun import implied_seconds


@pytest.mark.parametrize(("calls", "headroom", "seconds"), [
    ({"bulk_subscribe_profiles": 75}, 1.0, 1.0),  # one second of burst
    ({"bulk_subscribe_profiles": 750}, 1.0, 10.0),  # a whole window, at 75 a second
    ({"bulk_subscribe_profiles": 1500}, 1.0, 70.0),  # the second window opens a minute on
    ({"bulk_import_profiles": 150, "bulk_subscribe_profiles": 75}, 1.0, 15.0),  # the slowest
    ({"bulk_subscribe_profiles": 750}, 0.9, 61.1),  # 675 a window at 90 %: 75 spill over
])
def test_the_slowest_operation_sets_the_time(calls: dict[str, int], headroom: float,
                                             seconds: float) -> None:
    assert implied_seconds(calls, headroom) == pytest.approx(seconds, abs=0.2)
