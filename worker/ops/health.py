"""Health checks shared by the beat task (``ops.health``) and ``klaviyo-export health``.

Each check returns :class:`Component` values: a name, ``ok`` (``True``, ``False`` or ``None``
when it could not be checked, e.g. Klaviyo while the limiter's Redis is down), a one-line detail
and when it was checked. Nothing here prints a key, a token or an unmasked email. The
``jobs-file`` component fails while the jobs file on disk does not load (processes keep the
last good one, see :mod:`core.jobswatch`) and names the error.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis

from contract import operations as ops
from core.jobs import ExportJob
from core.keys import JobKeys, broker_queue_keys, dlq_key, health_key, heartbeat_key
from core.redact import redact
from worker.klaviyo.accounts import check_account
from worker.klaviyo.client import KlaviyoClient, fingerprint
from worker.klaviyo.errors import KlaviyoError
from worker.limits.ratelimit import RateLimiter
from worker.ops.schedule import QUEUES, OpsSettings
from worker.state.audits import AuditStore
from worker.state.brake import RemovalBrake, policy_of
from worker.state.jobstate import HELD, JobStateStore

ClientFor = Callable[[str], KlaviyoClient]  # api key → client


@dataclass(frozen=True)
class Component:
    name: str
    ok: bool | None
    detail: str
    at: float = field(default_factory=time.time)

    def line(self) -> str:
        return f"{self.name}: {self.detail}"


def check_jobs_file(path: Path, problem: str | None, count: int) -> Component:
    """Whether the jobs file on disk is the one in force (a bad edit keeps the last good one)."""
    if problem is not None:
        return Component("jobs-file", False, f"{path}: {problem} "
                         "(running workers and receivers keep the last good file)")
    return Component("jobs-file", True, f"{count} job(s) from {path}")


def check_redis(client: redis.Redis) -> Component:
    try:
        client.ping()
    except redis.RedisError as exc:
        return Component("redis", False, f"unreachable ({type(exc).__name__}: {redact(str(exc))})")
    return Component("redis", True, "ping ok")


def _keys_by_account(
    jobs: Iterable[ExportJob],
) -> tuple[dict[str, list[str]], dict[str, str], list[Component]]:
    """(fingerprint → job ids, fingerprint → key, failures for jobs without a key)."""
    job_ids: dict[str, list[str]] = defaultdict(list)
    keys: dict[str, str] = {}
    missing: list[Component] = []
    for job in jobs:
        try:
            key = job.api_key()
        except Exception as exc:  # noqa: BLE001 - a missing key is a finding, not a crash
            missing.append(Component(f"klaviyo[{job.id}]", False, redact(str(exc))))
            continue
        keys[fingerprint(key)] = key
        job_ids[fingerprint(key)].append(job.id)
    return job_ids, keys, missing


def check_klaviyo(
    jobs: Iterable[ExportJob], limiter: RateLimiter | None, client_for: ClientFor
) -> list[Component]:
    """``check_account`` once per distinct key, each call granted by the shared limiter."""
    job_ids, keys, found = _keys_by_account(jobs)
    for account, key in keys.items():
        name = f"klaviyo[{','.join(job_ids[account])}]"
        found.append(_check_one(name, client_for(key), limiter))
    return found


def _check_one(name: str, client: KlaviyoClient, limiter: RateLimiter | None) -> Component:
    if limiter is None:
        return Component(name, None, "not checked: the rate limiter needs Redis")
    try:
        wait = limiter.acquire(client.account, ops.GET_ACCOUNTS)  # never sleep for a token
    except redis.RedisError:
        return Component(name, None, "not checked: the rate limiter needs Redis")
    if wait > 0:
        return Component(name, None, f"not checked: get_accounts budget used, next in {wait:.0f}s")
    try:
        account_id = check_account(client)
    except KlaviyoError as exc:
        status = f" (HTTP {exc.status})" if exc.status else ""
        return Component(name, False, f"{type(exc).__name__}{status}: {redact(str(exc))}")
    return Component(name, True, f"account {account_id} (key {client.account})")


def queue_depth(client: redis.Redis, prefix: str, queue: str) -> int:
    return sum(int(client.llen(key)) for key in broker_queue_keys(prefix, queue))


def check_queues(client: redis.Redis, prefix: str, threshold: int) -> list[Component]:
    found = []
    for queue in QUEUES:
        depth = queue_depth(client, prefix, queue)
        ok = depth <= threshold
        found.append(Component(f"queue[{queue}]", ok, f"{depth} waiting (max {threshold})"))
    return found


def check_dead_letters(
    client: redis.Redis, prefix: str, job_ids: Iterable[str], threshold: int
) -> list[Component]:
    found = []
    for job_id in job_ids:
        size = int(client.llen(dlq_key(prefix, job_id)))
        detail = f"{size} dead letters (max {threshold})"
        found.append(Component(f"dead-letters[{job_id}]", size <= threshold, detail))
    return found


def check_heartbeats(
    client: redis.Redis, prefix: str, period: float, required: bool, now: float | None = None
) -> list[Component]:
    """Each queue's heartbeat is younger than 3 periods, once workers ran (always if required)."""
    now = time.time() if now is None else now
    found = []
    for queue in QUEUES:
        raw = client.get(heartbeat_key(prefix, queue))
        name = f"heartbeat[{queue}]"
        if raw is None:
            ok = False if required else None
            found.append(Component(name, ok, "no heartbeat yet: no worker has consumed this queue"))
            continue
        age = now - float(raw)
        fresh = age < 3 * period
        found.append(Component(name, fresh, f"last {age:.0f}s ago (max {3 * period:.0f}s)"))
    return found


def held_jobs(client: redis.Redis, prefix: str, jobs: Iterable[ExportJob]) -> dict[str, str]:
    """Job id → ``paused`` or ``stopped``, for the jobs an operator holds."""
    found = {}
    for job in jobs:
        status = JobStateStore(client, JobKeys(prefix, job.id)).status()
        if status in HELD:
            found[job.id] = status.value
    return found


def run_checks(
    client: redis.Redis,
    prefix: str,
    jobs: list[ExportJob],
    *,
    client_for: ClientFor,
    limiter: RateLimiter | None,
    settings: OpsSettings,
    require_workers: bool = False,
    jobs_file: Component | None = None,
) -> list[Component]:
    """Every check; Redis-backed ones are skipped (not failed twice) when Redis is down."""
    redis_state = check_redis(client)
    found = [redis_state] if jobs_file is None else [jobs_file, redis_state]
    held = held_jobs(client, prefix, jobs) if redis_state.ok else {}
    found += [Component(f"job[{job_id}]", None, f"{status}: Klaviyo not called")
              for job_id, status in held.items()]
    active = [j for j in jobs if j.id not in held]  # a paused job's key is not used either
    found += check_klaviyo(active, limiter if redis_state.ok else None, client_for)
    if not redis_state.ok:
        return found
    found += check_heartbeats(client, prefix, settings.heartbeat_interval_seconds, require_workers)
    found += check_queues(client, prefix, settings.queue_depth_threshold)
    job_ids = [j.id for j in jobs]
    found += check_dead_letters(client, prefix, job_ids, settings.dead_letter_threshold)
    found += check_audits(client, prefix, job_ids, settings.audit_drift_threshold,
                          mirrored={j.id for j in jobs if j.mirror})
    found += check_brakes(client, prefix, jobs)
    return found


def check_audits(
    client: redis.Redis, prefix: str, job_ids: Iterable[str], threshold: int,
    now: float | None = None, *, mirrored: frozenset[str] | set[str] = frozenset(),
) -> list[Component]:
    """Each job's last audit (``klaviyo-export audit``): people out of place, against the
    threshold, with the recent joiners the incremental check found in no audience since (people
    added by hand only for ``mirrored`` jobs, as in the audit's own count). A job never audited
    is not failed: there is nothing to judge yet."""
    now = time.time() if now is None else now
    found = []
    for job_id in job_ids:
        audits = AuditStore(client, JobKeys(prefix, job_id))
        last, recent = audits.last(), audits.recent_extra()
        name = f"audit[{job_id}]"
        # recent joiners in no audience (the incremental check), added by hand or not
        joined = (f", {sum(recent.values())} recent joiner(s) in no audience {recent}"
                  if recent else "")
        late = sum(n for kind, n in recent.items()
                   if job_id in mirrored or kind != "added_by_hand")
        if last is None:
            if recent:
                found.append(Component(name, late <= threshold, f"never fully audited{joined}"))
            else:
                found.append(Component(name, None, "never audited (klaviyo-export audit JOB)"))
            continue
        drift = int(last.get("actionable", 0)) + late
        detail = (f"{drift} out of place (max {threshold}): missing {last['missing']}, "
                  f"extra {last['extra']}, {now - float(last['at']):.0f}s ago{joined}")
        found.append(Component(name, drift <= threshold, detail))
    return found


def check_brakes(client: redis.Redis, prefix: str, jobs: Iterable[ExportJob]) -> list[Component]:
    """A job whose brake holds its removals fails until a person releases it."""
    found = []
    for job in jobs:
        state = RemovalBrake(client, JobKeys(prefix, job.id), policy_of(job)).state()
        if state["held"]:
            detail = (f"removals held: {state['wanted']} of {state['of']} wanted off within "
                      f"{job.removal_brake_window_seconds:.0f}s (max {job.removal_brake:.0%}); "
                      f"{state['waiting']} waiting for `klaviyo-export brake release {job.id}`")
        else:
            detail = "removals flow"
        found.append(Component(f"brake[{job.id}]", not state["held"], detail))
    return found


def failing(components: Iterable[Component]) -> list[Component]:
    return [c for c in components if c.ok is False]


def as_dict(components: Iterable[Component]) -> dict[str, dict[str, Any]]:
    return {c.name: {k: v for k, v in asdict(c).items() if k != "name"} for c in components}


def store(client: redis.Redis, prefix: str, components: Iterable[Component]) -> None:
    """Write each component's result into the ``{prefix}:health`` hash."""
    mapping = {name: json.dumps(value) for name, value in as_dict(components).items()}
    if mapping:
        client.hset(health_key(prefix), mapping=mapping)  # type: ignore[arg-type]
