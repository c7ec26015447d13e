"""Throughput on a real account's terms (issue #16), end to end against the sandbox.

Mapped fields cost no subscribe throughput: members' fields go out in bulk imports of up to
10,000 profiles, apart from the 1,000-user subscribe jobs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from contract.operations import GET_BULK_IMPORT, GET_BULK_IMPORTS
from core.events import Action
from core.keys import JobKeys
from sandbox.server import SandboxServer
from tests.backfill.helpers import run_start, write_jsonl
from tests.conftest import RedisServer, wait_until
from tests.engine.conftest import SUITE_JOB_DELAY
from tests.harness import Stack, event

E = Action.ENTER
T0 = 1_764_000_000_000_000_000
FIELD_MAP = {"first_name": "first_name", "city": "location.city", "ltv": "properties.ltv"}

pytestmark = pytest.mark.serial  # figures: times and shares of windows, measured alone


def _calls(stack: Stack, op: str) -> int:
    ops: dict[str, Any] = stack.admin("GET", "stats")["operations"]
    return int(ops.get(op, {}).get("calls", 0))


def _people(n: int) -> list[str]:
    return [f"user{i:06d}@example.com" for i in range(n)]


@pytest.fixture
def mapped(stack: Stack) -> Stack:
    stack.write_jobs(
        {"id": "mapped", "audiences": ["vip"], "new_list_name": "Mapped", "field_map": FIELD_MAP}
    )
    stack.start_worker(concurrency=2)
    return stack


class TestMappedFields:
    def test_fields_go_out_in_imports_ten_times_larger_than_subscribe_jobs(
        self, mapped: Stack
    ) -> None:
        """20,000 field-mapped enters: 20 subscribe jobs of 1,000, at most 4 bulk imports (one
        per subscribe chunk before), and every profile carries its fields."""
        people = _people(20_000)
        mapped.send(
            "mapped",
            [
                event(e, "vip", E, T0 + i, first_name=f"N{i}", city="Oslo", ltv=i)
                for i, e in enumerate(people)
            ],
        )
        list_id = mapped.wait_for_members("mapped", set(people), timeout=120)
        for i in (0, 9_999, 19_999):
            profile = mapped.wait_profile(people[i], lambda p, i=i: p.get("first_name") == f"N{i}")
            assert profile["location"]["city"] == "Oslo" and profile["properties"]["ltv"] == i
        imported = wait_until(
            lambda: mapped.admin("GET", "stats")["operations"]
            .get("bulk_import_profiles", {})
            .get("items", 0)
            >= len(people),
            timeout=60,
            message="every member's fields imported",
        )
        assert imported
        subscribes = _calls(mapped, "bulk_subscribe_profiles")
        imports = _calls(mapped, "bulk_import_profiles")
        assert subscribes == 20
        assert 2 <= imports <= 4, (subscribes, imports)
        mapped.assert_reconciled("mapped", entered=len(people), members=len(people))
        assert mapped.list_emails(list_id) == set(people)


def _polls(stack: Stack) -> tuple[int, int]:
    """(list calls over the account's imports, reads of one import)."""
    return _calls(stack, GET_BULK_IMPORTS.name), _calls(stack, GET_BULK_IMPORT.name)


def _force_add(stack: Stack, lease_seconds: float | None = None) -> None:
    stack.write_jobs({"id": "force", "audiences": ["vip"], "force_add": True})
    if lease_seconds is not None:
        stack.extra_env["LEASE_SECONDS"] = str(lease_seconds)
    stack.start_worker(concurrency=2)


def _no_import_outstanding(stack: Stack, job_id: str) -> None:
    r = redis.Redis.from_url(stack.redis_url)
    wait_until(lambda: r.zcard(JobKeys(stack.prefix, job_id).import_jobs) == 0, timeout=30,
               message="every import finished and released")


def _imports_sent(stack: Stack, n: int) -> None:
    wait_until(lambda: _calls(stack, "bulk_import_profiles") >= n, timeout=20,
               message=f"{n} bulk import(s) sent")


class TestPolling:
    @pytest.mark.parametrize("slow_sandbox", [4.0], indirect=True)
    def test_a_round_of_polls_costs_one_call_however_many_imports_run(
        self, slow_stack: Stack
    ) -> None:
        """Five force-add imports in flight at once (each takes 4 s): every round is one list
        call, and each import is read on its own once, when it has finished."""
        _force_add(slow_stack)
        everyone: set[str] = set()
        started = time.monotonic()
        for n in range(5):
            batch = {f"b{n}-{i}@example.com" for i in range(3)}
            slow_stack.send("force", [event(e, "vip", E, T0 + n) for e in sorted(batch)])
            _imports_sent(slow_stack, n + 1)
            everyone |= batch
        slow_stack.wait_for_members("force", everyone, timeout=60)
        _no_import_outstanding(slow_stack, "force")
        elapsed = time.monotonic() - started
        listed, read = _polls(slow_stack)
        assert _calls(slow_stack, "bulk_import_profiles") == 5
        assert read == 5, (listed, read)  # one read per import, to finish it
        rounds = elapsed / 0.2 + 3  # POLL_INTERVAL_SECONDS is 0.2 in the harness
        assert listed <= rounds, (listed, rounds)  # five chains of single reads: ~5 x rounds

    @pytest.mark.parametrize("slow_sandbox", [6.0], indirect=True)
    def test_a_poll_put_off_by_a_long_429_keeps_its_users_held(self, slow_stack: Stack) -> None:
        """An import takes 6 s, leases last 2 s, and the polls meet a 429 asking for 5 s: the
        users stay held through the wait, so a flush meanwhile sends nobody a second time."""
        _force_add(slow_stack, lease_seconds=2)
        slow_stack.admin("POST", "faults", json={
            "storm": {"seconds": 5, "retry_after": 5},
            "only_operations": [GET_BULK_IMPORTS.name, GET_BULK_IMPORT.name]})
        first = {f"held{i}@example.com" for i in range(5)}
        slow_stack.send("force", [event(e, "vip", E, T0) for e in sorted(first)])
        _imports_sent(slow_stack, 1)
        wait_until(lambda: sum(_polls(slow_stack)) >= 1, timeout=10, message="a poll met the 429")
        time.sleep(3)  # past the 2 s lease the import began with
        slow_stack.send("force", [event("late@example.com", "vip", E, T0 + 1)])
        _imports_sent(slow_stack, 2)
        slow_stack.wait_for_members("force", first | {"late@example.com"}, timeout=60)
        _no_import_outstanding(slow_stack, "force")
        imported = slow_stack.admin("GET", "stats")["operations"]["bulk_import_profiles"]
        assert (imported["calls"], imported["items"]) == (2, 6)  # nobody imported twice


def _left_in_minute() -> float:
    return 60 - time.time() % 60


class TestLiveFirst:
    @pytest.fixture
    def clock_stack(self, redis_server: RedisServer, redis_url: str,
                    tmp_path: Path) -> Iterator[Stack]:
        """The realistic sandbox, but its windows on the clock's minute and no other
        integration: this test measures the reserve against a window edge it can see (the
        learning of phase and foreign share is tests/engine/test_limiter_realistic.py's)."""
        server = SandboxServer(speed=1.0, job_delay=SUITE_JOB_DELAY, window_phase="epoch",
                               foreign_share=0.0).start()
        s = Stack(redis_url=redis_url, sandbox_url=server.url, workdir=tmp_path)
        try:
            yield s
        finally:
            s.stop_all()
            server.stop()

    def test_a_live_enter_passes_a_backfill_that_fills_the_window(
        self, clock_stack: Stack, tmp_path: Path
    ) -> None:
        """Two jobs on one account; our share of subscribe is 30 calls a minute and 3 a
        second (headroom 0.04). A 60,000-member backfill of one job takes every call the
        window lets a backfill take; a live enter for the other job still reaches its list
        at once, not at the next minute."""
        stack = clock_stack
        stack.extra_env["RATE_LIMIT_HEADROOM"] = "0.04"
        stack.write_jobs(
            {"id": "bulk", "audiences": ["bulk"], "new_list_name": "Bulk"},
            {"id": "live", "audiences": ["vip"], "new_list_name": "Live"},
        )
        stack.start_worker("live", concurrency=1, queues="realtime,maintenance")
        stack.start_worker("bulk", concurrency=2, queues="backfill")
        stack.send("live", [event("first@example.com", "vip", E, T0)])
        stack.wait_for_members("live", {"first@example.com"})
        if _left_in_minute() < 45:  # the live enter must land well before the window ends
            time.sleep(_left_in_minute() + 0.5)
        before = _calls(stack, "bulk_subscribe_profiles")
        rows = [{"email": e} for e in _people(60_000)]  # 60 calls: more than a window holds
        run_start(stack, "bulk", "--from-file", str(write_jsonl(tmp_path / "bulk.jsonl", rows)))

        def share() -> int:  # what a backfill may have taken by now (30 less the reserve)
            return 30 - int(0.2 * 30 * _left_in_minute() / 60)

        wait_until(lambda: _calls(stack, "bulk_subscribe_profiles") - before >= share() - 1,
                   timeout=40, message="the backfill at its share of the window")
        time.sleep(3)  # at 3 calls a second, long enough to take the rest of the window
        assert _calls(stack, "bulk_subscribe_profiles") - before < 30  # it left the reserve
        assert _left_in_minute() > 15, "the window must still have a while to run"
        sent = time.monotonic()
        stack.send("live", [event("now@example.com", "vip", E, T0 + 1)])
        stack.wait_for_members("live", {"first@example.com", "now@example.com"}, timeout=60)
        took = time.monotonic() - sent
        assert took < 5, took  # without a reserve: the next minute, 15 s or more away
