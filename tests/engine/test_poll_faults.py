"""An import poll that meets a 5xx, a 429 or our own throttle is put off, not failed.

No beat runs here: its sweep would restart a poll chain that ended, so only a chain that
reschedules itself can finish the import. And nothing may be logged as an error (each
ERROR is a Sentry event): these answers are expected on the way.
"""

from __future__ import annotations

from typing import Any

import pytest

from contract.operations import GET_BULK_IMPORT, GET_BULK_IMPORTS
from core.events import Action
from tests.conftest import wait_until
from tests.harness import Stack, event

T0 = 1_764_000_000_000_000_000


POLLS = [GET_BULK_IMPORT.name, GET_BULK_IMPORTS.name]  # one import's read, the list of them


def _failed_polls(stack: Stack) -> int:
    ops = stack.admin("GET", "stats")["operations"]
    rows = [ops.get(name, {}) for name in POLLS]
    return sum(
        n for row in rows for status, n in row.get("statuses", {}).items() if status != "200"
    )


@pytest.mark.faults
@pytest.mark.parametrize(
    "fault",
    [
        pytest.param({"error_rate": 1.0, "statuses": [500, 503]}, id="5xx"),
        pytest.param({"storm": {"seconds": 4, "retry_after": 1}}, id="429-and-own-throttle"),
    ],
)
def test_a_failing_import_poll_is_rescheduled_without_an_error(
    stack: Stack, fault: dict[str, Any]
) -> None:
    stack.write_jobs({"id": "force", "audiences": ["vip"],
                      "new_list_opt_in": "single", "force_add": True})
    worker = stack.start_worker()
    stack.admin("POST", "faults", json={**fault, "only_operations": POLLS})
    emails = {f"p{i}@example.com" for i in range(5)}
    stack.send("force", [event(e, "vip", Action.ENTER, T0) for e in sorted(emails)])
    wait_until(lambda: _failed_polls(stack) >= 3, timeout=30, message="three failed polls")
    stack.admin("DELETE", "faults")

    stack.wait_for_members("force", emails, timeout=60)
    log = (stack.workdir / "w1.log").read_text(errors="replace")
    errors = [line for line in log.splitlines() if '"level": "ERROR"' in line]
    assert errors == [], errors[:3]
    assert "Traceback" not in log
    assert '"level": "WARNING", "logger": "worker.engine.export"' in log  # said, once per put-off
    assert worker.poll() is None
