"""Nothing accepted is lost: a bad jobs file, a removed job, a failing record, a poisoned task.

Each test runs real workers against Redis and the sandbox; a message that cannot be recorded
must end recorded or in the dead letters *with its events*, and ``dlq replay`` brings them back.
"""

from __future__ import annotations

import json
import subprocess
import warnings
from typing import Any

import pytest
import redis
from pydantic import SecretStr
from starlette.exceptions import StarletteDeprecationWarning

from console.cli import main
from core.events import Action
from producers.webhook import create_app
from tests.conftest import wait_until
from tests.engine.conftest import Configure
from tests.harness import ROOT, Stack, event
from worker.celery_app import create_app as create_celery_app
from worker.commands import worker_argv

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

E = Action.ENTER
T0 = 1_764_000_000_000_000_000
TOKEN = "no-loss-token-0123456789"
VIP = {"id": "vip", "audiences": ["vip_buyers"],
       "new_list_opt_in": "single", "new_list_name": "VIP"}
NEWS = {"id": "news", "audiences": ["newsletter"],
        "new_list_opt_in": "single", "new_list_name": "News"}
TYPO = "\n[[jobs]]\nid = 'typo'\n"
def lytics_body(email: str, n: int) -> dict[str, Any]:
    at = f"2026-11-28T10:00:{n:02d}Z"
    return {"data": {"email": email,
                     "segment_events": [{"id": "s1", "slug": "vip_buyers", "event": "enter",
                                         "enter": at}]}}


def letters(stack: Stack, job_id: str) -> list[dict[str, Any]]:
    raw = redis.Redis.from_url(stack.redis_url).lrange(f"{stack.prefix}:job:{job_id}:dlq", 0, -1)
    return [json.loads(item) for item in raw]


def test_a_jobs_file_typo_loses_no_event_the_webhook_accepted(
        stack: Stack, configure: Configure, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue #12 item 1: a typo, 20 enters answered 202, the file fixed: all 21 on the list."""
    # given a running stack and a receiver that follows the jobs file, with one member
    stack.write_jobs(VIP)
    stack.start_worker()
    configure(stack)
    settings = stack.settings().model_copy(update={"webhook_token": SecretStr(TOKEN)})
    celery = create_celery_app(settings)
    app = create_app(settings, stack.jobs_file, celery, redis.Redis.from_url(stack.redis_url))
    with TestClient(app) as hook:
        hook.headers["Authorization"] = f"Bearer {TOKEN}"
        assert hook.post("/webhooks/lytics/vip",
                         json=lytics_body("first@example.com", 0)).status_code == 202
        stack.wait_for_members("vip", {"first@example.com"})
        # when a job with only an id is appended and 20 users enter
        stack.jobs_file.write_text(stack.jobs_file.read_text() + TYPO)
        users = {f"user{n}@example.com" for n in range(20)}
        for n, email in enumerate(sorted(users)):
            assert hook.post("/webhooks/lytics/vip",
                             json=lytics_body(email, n + 1)).status_code == 202
        # then health names the file's error while the workers keep the last good file
        assert main(["health"]) == 1
        out = capsys.readouterr().out
        assert "unhealthy jobs-file:" in out and "'typo'" in out, out
        # and once the file is fixed every accepted user is on the list, nothing set aside
        stack.write_jobs(VIP)
        stack.wait_for_members("vip", {"first@example.com", *users}, timeout=60)
    celery.close()
    assert letters(stack, "vip") == []
    # the typo was logged once per worker process (2 children), not once per task
    log = (stack.workdir / "w1.log").read_text()
    assert 1 <= log.count("keeping the last good one") <= 2, log


def test_events_for_a_removed_job_are_dead_lettered_with_their_events(
        stack: Stack, configure: Configure) -> None:
    """A job removed while its events are queued: each event is set aside, then replayable."""
    # given two jobs and a worker; then the news job is removed from the file
    stack.write_jobs(VIP, NEWS)
    stack.start_worker()
    stack.write_jobs(VIP)
    # when events for the removed job arrive
    stack.send("news", [event(f"Reader{n}@Example.com", "newsletter", E, T0 + n)
                        for n in range(5)])
    # then every event is a dead letter of its own, holding the event, reason unknown_job
    found = wait_until(lambda: len(letters(stack, "news")) == 5 and letters(stack, "news"),
                       timeout=30, message="5 dead letters for the removed job")
    assert isinstance(found, list)
    assert {d["reason"] for d in found} == {"unknown_job"}
    assert sorted(d["event"]["profile"]["email"] for d in found) == [
        f"Reader{n}@Example.com" for n in range(5)]
    # and when the job comes back, a replay puts its readers on its list
    stack.write_jobs(VIP, NEWS)
    configure(stack)
    assert main(["dlq", "replay", "news"]) == 0
    stack.wait_for_members("news", {f"reader{n}@example.com" for n in range(5)})
    assert letters(stack, "news") == []


def test_a_record_that_keeps_failing_is_retried_then_dead_lettered(
        stack: Stack, configure: Configure) -> None:
    """Any error while recording is retried, then set aside with the event: never acked away."""
    # given a worker allowed 2 attempts, and a user whose state key Redis refuses to update
    stack.extra_env["MAX_DELIVERIES"] = "2"
    stack.write_jobs(VIP)
    stack.start_worker()
    r = redis.Redis.from_url(stack.redis_url)
    r.set(f"{stack.prefix}:job:vip:u:ann@example.com", "not a hash")
    # when she and another user enter, in separate messages
    stack.send("vip", [event("Ann@Example.com", "vip_buyers", E, T0)])
    stack.send("vip", [event("bob@example.com", "vip_buyers", E, T0)])
    # then the other user is exported, and her event waits in the dead letters
    stack.wait_for_members("vip", {"bob@example.com"})
    found = wait_until(lambda: letters(stack, "vip"), timeout=30, message="a dead letter")
    assert isinstance(found, list) and len(found) == 1
    assert found[0]["reason"] == "record_failed" and "ResponseError" in found[0]["detail"]
    assert found[0]["event"]["profile"]["email"] == "Ann@Example.com"
    assert "retrying" in stack.log()
    # and once the cause is gone, a replay records and exports her
    r.delete(f"{stack.prefix}:job:vip:u:ann@example.com")
    configure(stack)
    assert main(["dlq", "replay", "vip"]) == 0
    stack.wait_for_members("vip", {"ann@example.com", "bob@example.com"})


def test_replaying_a_poisoned_enter_records_it_normalised(
        stack: Stack, configure: Configure) -> None:
    """Issue #12 item 6: a poisoned enter's replay puts the user on the list, lowercase."""
    # given an enter message already delivered MAX_DELIVERIES times (the poison guard's count)
    stack.write_jobs(VIP)
    stack.start_worker()
    r = redis.Redis.from_url(stack.redis_url)
    r.set(f"{stack.prefix}:deliveries:poisoned-enter:0", 5)
    celery = create_celery_app(stack.settings())
    wire = event("Mixed.Case@Example.COM", "vip_buyers", E, T0).to_wire()
    celery.send_task("audience.enter", args=("vip", [wire]), task_id="poisoned-enter",
                     queue="realtime")
    celery.close()
    # when it is delivered once more, the guard dead-letters it with its raw event
    found = wait_until(lambda: letters(stack, "vip"), timeout=30, message="a poison letter")
    assert isinstance(found, list) and found[0]["source"] == "poison"
    assert found[0]["event"] == wire
    # then a replay records it through the normal path: normalised, subscribed
    configure(stack)
    assert main(["dlq", "replay", "vip"]) == 0
    list_id = stack.wait_for_members("vip", {"mixed.case@example.com"})
    assert stack.admin("GET", f"lists/{list_id}/emails")["emails"] == ["mixed.case@example.com"]
    stack.assert_reconciled("vip", entered=None, members=1)
    stray = [k for k in r.scan_iter(f"{stack.prefix}:job:vip:*") if b"Mixed" in k]
    assert stray == [] and r.zscore(f"{stack.prefix}:job:vip:pending",
                                    "Mixed.Case@Example.COM") is None


def test_a_worker_started_with_a_bad_jobs_file_stops_with_one_line(stack: Stack) -> None:
    """With no good version to keep, the worker refuses to start: exit 2, one line, no trace."""
    stack.jobs_file.write_text(TYPO)
    done = subprocess.run(worker_argv("bad", 1, "realtime"), env=stack.env(), cwd=ROOT,
                          capture_output=True, timeout=60, check=False)
    err = done.stderr.decode()
    assert done.returncode == 2, err
    assert err.strip().splitlines()[-1] == (
        f"celery worker: {stack.jobs_file}: job 'typo': audiences: Field required")
    assert "Traceback" not in err
