"""Throughput on a real account's terms (issue #16), end to end against the sandbox.

Mapped fields cost no subscribe throughput: members' fields go out in bulk imports of up to
10,000 profiles, apart from the 1,000-user subscribe jobs.
"""

from __future__ import annotations

from typing import Any

import pytest

from core.events import Action
from tests.conftest import wait_until
from tests.harness import Stack, event

E = Action.ENTER
T0 = 1_764_000_000_000_000_000
FIELD_MAP = {"first_name": "first_name", "city": "location.city", "ltv": "properties.ltv"}


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
