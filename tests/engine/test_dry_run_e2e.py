"""``klaviyo-export start JOB --dry-run`` end to end: reads only (the sandbox's statistics
show no write call), and the counts it gives are what the real start then does."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from contract.operations import BY_NAME
from core.events import Action
from sandbox.testing import SandboxClient
from tests.backfill.helpers import run_info, run_start, write_jsonl
from tests.harness import API_KEY, Stack, event

E, X = Action.ENTER, Action.EXIT
MINUTE_NS = 60 * 10**9


def _rfc3339(ts_ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts_ns // 10**9))


def _rows() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [
        {"_uid": f"n{i}", "email": f"n{i}@example.com", "first_name": f"N{i}",
         "segments": ["vip", "buyers"] if i % 3 == 0 else ["vip"]} for i in range(200)]
    rows += [{"_uid": f"e{i}", "email": f"e{i}@example.com", "first_name": f"E{i}",
              "segments": ["vip"]} for i in range(5)]
    rows.append({"_uid": "gone", "email": "gone@example.com", "segments": ["vip"]})
    rows += [{"_uid": f"blank{i}", "segments": ["vip"]} for i in range(6)]
    rows += [{"_uid": f"bad{i}", "email": f"bad{i}@@example", "segments": ["vip"]}
             for i in range(4)]
    rows += [{"_uid": f"o{i}", "email": f"o{i}@example.com", "segments": ["other"]}
             for i in range(3)]
    return rows


def _writes(stack: Stack) -> dict[str, int]:
    """Calls to Klaviyo since the statistics were cleared that are not reads."""
    ops = stack.admin("GET", "stats")["operations"]
    return {name: row["calls"] for name, row in ops.items() if BY_NAME[name].method != "GET"}


def test_a_dry_run_sends_nothing_and_counts_what_start_then_does(
        stack: Stack, tmp_path: Path) -> None:
    api = SandboxClient(stack.sandbox_url, API_KEY)
    list_id = api.create_list("VIP", "single_opt_in")
    stack.admin("POST", f"lists/{list_id}/flows", json={"name": "Welcome"})
    stack.write_jobs({"id": "vip", "audiences": ["vip", "buyers"], "list_id": list_id,
                      "backfill": False, "field_map": {"first_name": "first_name"}})
    stack.start_worker()
    now = time.time_ns()
    members = [f"e{i}@example.com" for i in range(5)]
    stack.send("vip", [event(e, "vip", E, now - 120 * MINUTE_NS)
                       for e in [*members, "gone@example.com"]])
    stack.send("vip", [event("gone@example.com", "vip", X, now - 60 * MINUTE_NS)])
    stack.wait_for_members("vip", set(members))
    path = write_jsonl(tmp_path / "vip.jsonl", _rows())
    as_of = _rfc3339(now - 90 * MINUTE_NS)  # before gone's exit: gone stays off
    stack.admin("DELETE", "stats")

    out = run_start(stack, "vip", "--from-file", str(path), "--as-of", as_of, "--dry-run",
                    "--json").stdout
    found = json.loads(out)
    assert _writes(stack) == {}
    assert run_info(stack, "vip") == {}  # no backfill run either
    assert stack.list_emails(list_id) == set(members)
    assert found["list"] == {"id": list_id, "name": "VIP", "created": False,
                             "opt_in_process": "single_opt_in", "opt_in_requested": None}
    assert [f["name"] for f in found["flows"]] == ["Welcome"]
    plan = found["plan"]
    assert (plan["people"], plan["subscribe"], plan["refresh"], plan["remove"],
            plan["unchanged"]) == (219, 200, 5, 0, 1)
    assert plan["omitted"] == {"invalid_email": 4, "no_email": 6, "not_in_audience": 3}
    assert plan["calls"] == {"bulk_subscribe_profiles": 1, "bulk_import_profiles": 1}
    text = run_start(stack, "vip", "--from-file", str(path), "--as-of", as_of,
                     "--dry-run").stdout
    assert f"would use list {list_id} 'VIP' (single opt-in)" in text
    assert "flows triggered by adding people to it: Welcome (live)" in text

    before = stack.counters("vip")
    run_start(stack, "vip", "--from-file", str(path), "--as-of", as_of, "--wait", timeout=180)
    stack.wait_for_members("vip", {*members, *(f"n{i}@example.com" for i in range(200))},
                           timeout=60)
    after = stack.counters("vip")
    assert int(after["added"]) - int(before["added"]) == plan["subscribe"]
    assert after.get("removed") == before.get("removed")
    run = run_info(stack, "vip")
    assert {r: int(run.get(f"omitted:{r}", 0)) for r in plan["omitted"]} == plan["omitted"]
