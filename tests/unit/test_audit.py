"""The audit's rules: how each difference between the list and the desired state is named,
and how a repair hands people back to the engine with the counters kept equal to the list."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import redis

from core.jobs import ExportJob
from core.keys import JobKeys
from core.settings import load_settings
from tests.conftest import wait_until
from tests.harness import jobs_toml
from worker import runtime
from worker.engine import confirm
from worker.engine import export as engine
from worker.engine.audit import DesiredRead, ListRead, compare, read_desired
from worker.klaviyo.standing import Standing
from worker.ops.health import check_audits
from worker.state.audits import REJOIN, REMOVE, AuditStore
from worker.state.codes import APPLIED_IN, OUT
from worker.state.jobstate import JobStateStore

IN = f"{APPLIED_IN}|"
LIST = "L1"


def job(**fields: object) -> ExportJob:
    return ExportJob.model_validate({"id": "vip", "audiences": ["a"], **fields})


def standing(consent: str = "NEVER_SUBSCRIBED", **extra: object) -> Standing:
    return Standing(profile_id="p", consent=consent, can_receive=True, **extra)  # type: ignore[arg-type]


def look_up(found: dict[str, Standing]):  # type: ignore[no-untyped-def]
    asked: list[str] = []

    def standing_of(emails: Sequence[str]) -> dict[str, Standing]:
        asked.extend(emails)
        return {e: s for e, s in found.items() if e in emails}

    return standing_of, asked


def test_missing_people_are_named_by_what_explains_them() -> None:
    desired = DesiredRead(members={"await@x.io", "conf@x.io", "supp@x.io", "dead@x.io",
                                   "busy@x.io"},
                          applied={e: IN for e in ("await@x.io", "conf@x.io", "supp@x.io")},
                          known={"await@x.io", "conf@x.io", "supp@x.io", "dead@x.io",
                                 "busy@x.io"},
                          in_transit={"busy@x.io"})
    suppressed = standing(list_suppressions=({"list_id": LIST, "reason": "UNSUBSCRIBE"},))
    standing_of, asked = look_up({"await@x.io": standing(), "conf@x.io": standing("SUBSCRIBED"),
                                  "supp@x.io": suppressed})
    found = compare(job(), ListRead(), desired, list_id=LIST, opt_in_process="double_opt_in",
                    dead={"dead@x.io"}, standing_of=standing_of)
    assert found.missing == {"awaiting_confirmation": ["await@x.io"],
                             "suppressed": ["supp@x.io"], "dead_lettered": ["dead@x.io"],
                             "unexplained": ["conf@x.io"]}  # confirmed once, then taken off
    assert found.in_transit == 1
    assert sorted(asked) == ["await@x.io", "conf@x.io", "supp@x.io"]  # never the explained


def test_on_a_single_opt_in_list_nobody_is_awaiting_confirmation() -> None:
    desired = DesiredRead(members={"ann@x.io"}, applied={"ann@x.io": IN}, known={"ann@x.io"})
    standing_of, _ = look_up({"ann@x.io": standing()})
    found = compare(job(), ListRead(), desired, list_id=LIST, opt_in_process="single_opt_in",
                    dead=set(), standing_of=standing_of)
    assert found.missing["unexplained"] == ["ann@x.io"]


def test_extra_people_are_told_apart_by_whether_the_job_ever_had_them() -> None:
    listed = ListRead(members={"late@x.io": "p1", "hand@x.io": "p2"}, phone_only=["p3"])
    desired = DesiredRead(applied={"late@x.io": OUT}, known={"late@x.io"})
    standing_of, _ = look_up({})
    double = compare(job(), listed, desired, list_id=LIST, opt_in_process="double_opt_in",
                     dead=set(), standing_of=standing_of)
    assert double.extra == {"confirmed_after_exit": ["late@x.io"], "overtaken_by_async_job": [],
                            "added_by_hand": ["hand@x.io"]}
    assert (double.extra_count, double.actionable) == (3, 1)  # by hand: not the job's doing
    single = compare(job(mirror=True), listed, desired, list_id=LIST,
                     opt_in_process="single_opt_in", dead=set(), standing_of=standing_of)
    assert single.extra["overtaken_by_async_job"] == ["late@x.io"]
    assert single.actionable == 3  # a mirror owns the whole list
    summary = single.summary()
    assert (summary["missing"], summary["extra"]) == (0, 3)
    assert summary["breakdown"]["extra"]["added_by_hand"] == {"count": 2,
                                                             "sample": ["h***@x.io"]}


def test_an_add_only_job_keeps_leavers_on_purpose() -> None:
    listed = ListRead(members={"left@x.io": "p1"})
    desired = DesiredRead(applied={"left@x.io": IN}, known={"left@x.io"})
    standing_of, _ = look_up({})
    found = compare(job(on_exit="keep"), listed, desired, list_id=LIST,
                    opt_in_process="single_opt_in", dead=set(), standing_of=standing_of)
    assert (found.extra_count, found.kept) == (0, 1)


def test_requeue_keeps_added_minus_removed_equal_to_the_list(redis_client: redis.Redis) -> None:
    keys = JobKeys("t", "vip")
    redis_client.hset(keys.user("gone@x.io"), "a", "E:1")  # a member Klaviyo lost
    redis_client.hset(keys.user("late@x.io"), "a", "X:2")  # left, back on the list
    redis_client.hset(keys.user("back@x.io"), "a", "E:3")  # re-entered since the audit
    redis_client.hset(keys.applied, mapping={"gone@x.io": IN, "late@x.io": OUT,
                                             "back@x.io": OUT})
    redis_client.hset(keys.counters, mapping={"added": 3, "removed": 2})
    queued = AuditStore(redis_client, keys).requeue(
        [("gone@x.io", REJOIN), ("late@x.io", REMOVE), ("hand@x.io", REMOVE),
         ("back@x.io", REMOVE)], now_ms=5)
    assert queued == 3
    assert redis_client.hgetall(keys.counters) == {"added": "4", "removed": "2"}
    assert set(redis_client.zrange(keys.pending, 0, -1)) == {"gone@x.io", "late@x.io",
                                                             "hand@x.io"}
    assert redis_client.hget(keys.applied, "gone@x.io") is None  # subscribed again
    assert redis_client.hget(keys.applied, "late@x.io") == IN  # removed by the next flush
    assert redis_client.hget(keys.applied, "back@x.io") == OUT  # untouched


def test_the_desired_state_is_read_whole_with_who_is_in_transit(redis_client: redis.Redis) -> None:
    keys = JobKeys("t", "vip")
    for i in range(2500):  # more than one batch
        redis_client.hset(keys.user(f"u{i}@x.io"), mapping={"a": "E:1", "b": "X:2"})
    redis_client.hset(keys.user("left@x.io"), "a", "X:3")
    redis_client.hset(keys.applied, mapping={"u7@x.io": IN, "left@x.io": OUT})
    redis_client.zadd(keys.pending, {"u9@x.io": 1})
    redis_client.hset(keys.applied_at, mapping={"u7@x.io": 1000, "left@x.io": 5000})
    redis_client.hset(JobKeys("t", "vip2").user("u0@x.io"), "a", "X:1")  # another job's
    read = read_desired(redis_client, keys, since_ms=5000)
    assert len(read.members) == 2500 and "left@x.io" not in read.members
    assert len(read.known) == 2501
    assert read.applied == {"u7@x.io": IN, "left@x.io": OUT}
    assert read.in_transit == {"u9@x.io", "left@x.io"}  # told while the list was read


def test_recent_joiners_in_no_audience_count_in_health_until_a_full_audit(
        redis_client: redis.Redis) -> None:
    """The incremental check's findings add to the last audit's drift (people added by hand
    only on a mirror job), and a full audit, which read them itself, clears them."""
    keys = JobKeys("t", "vip")
    audits = AuditStore(redis_client, keys)
    audits.save({"at": 100.0, "missing": 0, "extra": 0, "actionable": 0})
    audits.note_extra({"h@x.io": "added_by_hand", "late@x.io": "overtaken_by_async_job"})
    assert audits.recent_extra() == {"added_by_hand": 1, "overtaken_by_async_job": 1}
    [plain] = check_audits(redis_client, "t", ["vip"], 0, now=160.0)
    assert plain.ok is False
    assert plain.detail.startswith("1 out of place")
    [mirrored] = check_audits(redis_client, "t", ["vip"], 1, now=160.0, mirrored={"vip"})
    assert (mirrored.ok, mirrored.detail.split(" (")[0]) == (False, "2 out of place")
    audits.save({"at": 200.0, "missing": 0, "extra": 2, "actionable": 0})
    assert audits.recent_extra() == {}
    assert float(redis_client.get(keys.audit_full_at)) == 200.0  # the next one counts from here


@pytest.fixture
def two_jobs(redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A single opt-in job and a double opt-in one, ready, with confirmation passes due every
    0.2 s and incremental audits every 300 s; yields the key prefix."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    path = tmp_path / "jobs.toml"
    path.write_text(jobs_toml([{"id": "single", "audiences": ["a"], "list_id": "L-single"},
                               {"id": "double", "audiences": ["b"], "list_id": "L-double"}]))
    for name, value in {"REDIS_URL": redis_url, "KEY_PREFIX": prefix,
                        "EXPORT_JOBS_FILE": str(path), "CONFIRM_INTERVAL_SECONDS": "0.2",
                        "AUDIT_INCREMENTAL_SECONDS": "300"}.items():
        monkeypatch.setenv(name, value)
    load_settings.cache_clear()
    runtime.redis_client.cache_clear()
    client = runtime.redis_client()
    for job_id, opt_in in (("single", "single_opt_in"), ("double", "double_opt_in")):
        store = JobStateStore(client, JobKeys(prefix, job_id))
        store.ready(f"L-{job_id}")
        store.opt_in(opt_in, "")
    yield prefix
    load_settings.cache_clear()
    runtime.redis_client.cache_clear()


def test_a_single_opt_in_job_is_audited_at_its_own_slower_cadence(
        two_jobs: str, redis_client: redis.Redis) -> None:
    """A double opt-in job's pass (confirmations, and the audit on the same pages) is due again
    at CONFIRM_INTERVAL_SECONDS; a single opt-in job, with nobody to confirm, is read for its
    incremental audit alone and not again before AUDIT_INCREMENTAL_SECONDS (less beat's jitter
    share of one tick), however often beat asks."""
    assert engine.confirm_wanted("double") and engine.confirm_wanted("single")
    assert not engine.confirm_wanted("double") and not engine.confirm_wanted("single")
    for _ in range(3):  # three more confirmation periods
        wait_until(lambda: engine.confirm_wanted("double"), timeout=5,
                   message="the double opt-in job's next confirmation pass")
        assert not engine.confirm_wanted("single")
    claim_ms = redis_client.pttl(JobKeys(two_jobs, "single").audit_incremental_due)
    assert 300_000 - 0.2 * 200 - 1000 < claim_ms <= 300_000
    assert redis_client.pttl(JobKeys(two_jobs, "double").audit_incremental_due) == -2  # none


def test_only_the_incremental_audit_alone_goes_through_the_background_client(
        two_jobs: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Live flushes go first: a pass that confirms nobody is a background caller."""
    asked: dict[str, bool] = {}
    monkeypatch.setattr(engine, "klaviyo",
                        lambda job, *, background=False: asked.setdefault(job.id, background))
    monkeypatch.setattr(confirm, "check_pass", lambda *a, **k: confirm.ConfirmOutcome())
    for job_id in ("single", "double"):
        engine.run_confirm(job_id, lambda *_: None)
    assert asked == {"single": True, "double": False}
