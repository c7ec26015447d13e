"""(c): this project's workers exporting the same audience, fed by a backfill or in real time."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import redis

from bench import ceiling
from bench.baselines import list_count
from bench.produce import email, field_values
from bench.stack import ROOT, Redis, Sandbox, TreeSampler, stop, wait_until
from core.keys import JobKeys
from worker.commands import worker_argv

AUDIENCE = "bench_audience"
# three mapped fields (Lytics field → Klaviyo attribute), as a real job maps them
FIELDS = {"first_name": "first_name", "city": "location.city", "ltv": "properties.ltv"}


@dataclass
class EngineStack:
    """Workers (one Celery parent, ``concurrency`` processes) for one job on one account."""

    workdir: Path
    redis: Redis
    sandbox: Sandbox
    force_add: bool
    concurrency: int
    extra_env: dict[str, str] = field(default_factory=dict)
    job_lines: str = ""  # more TOML lines for the job (``resubscribe = true``...)
    field_map: dict[str, str] = field(default_factory=dict)  # Lytics field → Klaviyo attribute
    also: tuple[str, ...] = ()  # more jobs on the same account (one limiter): ``job_id(name)``
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"pk_bench_{self.tag}"

    @property
    def prefix(self) -> str:
        return f"b{self.tag}"

    @property
    def job(self) -> str:
        return f"bench-{self.tag}"

    def job_id(self, name: str = "") -> str:
        return f"{self.job}-{name}" if name else self.job

    def audience(self, name: str = "") -> str:
        return f"{AUDIENCE}_{name}" if name else AUDIENCE

    @property
    def jobs_file(self) -> Path:
        return self.workdir / f"jobs-{self.tag}.toml"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KLAVIYO_", "CELERY_"))}
        env.update(
            {
                "REDIS_URL": self.redis.url,
                "KLAVIYO_BASE_URL": self.sandbox.url,
                "KLAVIYO_API_KEY": self.key,
                "EXPORT_JOBS_FILE": str(self.jobs_file),
                "KEY_PREFIX": self.prefix,
                "RATE_LIMIT_SPEED": "1",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        return env

    def _job_toml(self, name: str) -> str:
        fields = ", ".join(f'"{k}" = "{v}"' for k, v in self.field_map.items())
        return (
            f'[[jobs]]\nid = "{self.job_id(name)}"\naudiences = ["{self.audience(name)}"]\n'
            f'new_list_name = "bench {self.tag} {name}"\n'
            'new_list_opt_in = "single"\n'  # throughput, not confirmations
            f"force_add = {'true' if self.force_add else 'false'}\n{self.job_lines}"
            + (f"field_map = {{ {fields} }}\n" if self.field_map else "")
        )

    def start(self) -> subprocess.Popen[bytes]:
        self.jobs_file.write_text(
            "".join(self._job_toml(name) for name in ("", *self.also)), encoding="utf-8"
        )
        log_path = self.workdir / f"worker-{self.tag}.log"
        log = open(log_path, "ab")  # noqa: SIM115 - lives as long as the process
        cmd = worker_argv(self.tag, self.concurrency)
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        wait_until(
            lambda: b"ready." in log_path.read_bytes() or proc.poll() is not None,
            90,
            "worker ready",
        )
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited: {log_path.read_text(errors='replace')[-3000:]}")
        return proc

    def list_id(self, timeout: float = 120, name: str = "") -> str:
        client = redis.Redis.from_url(self.redis.url, decode_responses=True)
        return str(
            wait_until(
                lambda: client.hget(JobKeys(self.prefix, self.job_id(name)).state, "list_id"),
                timeout,
                "the job's list",
                interval=0.1,
            )
        )

    def stop(self) -> None:
        for proc in self.procs:
            stop(proc)


class Command:
    """``start`` or a producer as its own process; its output lines, timestamped."""

    def __init__(self, cmd: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.lines: list[tuple[float, bytes]] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append((time.time(), line))

    def ready_at(self) -> float | None:
        """When ``start`` said the list was ready and dispatch began."""
        return next((t for t, line in self.lines if b"ready" in line), None)

    def failed(self) -> bool:
        return self.proc.poll() not in (None, 0)

    def output(self) -> str:
        return b"".join(line for _, line in self.lines)[-3000:].decode(errors="replace")

    def wait(self, timeout: float = 120) -> None:
        self.proc.wait(timeout=timeout)
        self.reader.join(5)


def start_backfill(stack: EngineStack, source: Path, name: str = "") -> Command:
    """``klaviyo-export start JOB --from-file source`` for the stack's job ``name``."""
    return Command([sys.executable, "-m", "console.cli", "start", stack.job_id(name),
                    "--from-file", str(source)], stack.env())


def account_of(sandbox: Sandbox, key: str) -> ceiling.Account:
    """The account's window phase (from the sandbox) and the foreign client's share."""
    burst, steady = sandbox.phase(key)
    return ceiling.Account(burst, steady, sandbox.foreign_share)


def sleep_to_window(account: ceiling.Account, before: float = 1.0) -> None:
    """Fixed windows reward starting on one: sleep until ``before`` s ahead of the account's
    next steady window, so that a run of k windows' calls can finish inside its k-th."""
    now = time.time()
    opens = math.floor((now - account.steady_phase) / 60 + 1) * 60 + account.steady_phase
    time.sleep(max(0.0, opens - now - before))


def write_audience(path: Path, profiles: int, prefix: str = "u", fields: bool = False) -> Path:
    """A backfill file of ``profiles`` people (with three mapped fields' values if asked)."""
    with path.open("wb") as fh:
        for i in range(profiles):
            row: dict[str, Any] = {"email": email(prefix, i)}
            if fields:
                row.update(field_values(i))
            fh.write(orjson.dumps(row) + b"\n")
    return path


def run_export(
    workdir: Path,
    rds: Redis,
    sandbox: Sandbox,
    *,
    profiles: int,
    concurrency: int,
    force_add: bool,
    timeout: float,
    path: str = "backfill",
    job_lines: str = "",
    prepare: Callable[[EngineStack], None] | None = None,
    field_map: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Export ``profiles`` new users; wait until the list holds exactly them.

    ``path="backfill"``: ``klaviyo-export start JOB --from-file`` (the clock starts when the
    list is ready and dispatch begins); ``path="realtime"``: ``send_events`` in bodies of
    1,000 (the clock starts at the first publish). ``prepare`` sets the account up before
    the workers start (not timed).
    """
    sandbox.forget()
    stack = EngineStack(workdir, rds, sandbox, force_add, concurrency, job_lines=job_lines,
                        field_map=dict(field_map or {}))
    if prepare is not None:
        prepare(stack)
    sampler = TreeSampler()
    try:
        worker = stack.start()
        sampler.watch("workers", worker.pid)
        sampler.watch("redis", rds.proc.pid)
        sampler.watch("sandbox", sandbox.proc.pid)
        sampler.sample()
        before = {n: sampler.cpu_seconds(n) for n in ("workers", "redis", "sandbox")}
        source = workdir / f"audience-{stack.tag}.jsonl"
        if path == "backfill":
            write_audience(source, profiles, fields=bool(stack.field_map))
        account = account_of(sandbox, stack.key)
        sleep_to_window(account)
        sampler.start()
        started = time.time()
        if path == "backfill":
            producer = start_backfill(stack, source)
        else:
            producer = Command([
                sys.executable, "-m", "bench.produce", "--redis", rds.url, "--prefix",
                stack.prefix, "--job", stack.job, "--audience", AUDIENCE, "--profiles",
                str(profiles)], stack.env())
        sampler.watch("producer", producer.proc.pid)
        list_id = stack.list_id()
        polls, count, last_print = 0, 0, time.time()
        work_op = "bulk_import_profiles" if force_add else "bulk_subscribe_profiles"
        sent: float | None = None
        while count < profiles:
            if time.time() - started > timeout:
                raise TimeoutError(f"{count:,} of {profiles:,} after {timeout:.0f}s")
            if producer.failed():
                raise RuntimeError(producer.output())
            time.sleep(0.25)
            count = list_count(sandbox, stack.key, list_id)
            polls += 1
            if sent is None and accepted(sandbox, stack.key, work_op) >= profiles:
                sent = time.time()
            if time.time() - last_print >= 10:
                last_print = time.time()
                print(
                    f"    {time.time() - started:6.1f}s  {count:>10,} / {profiles:,} in the list",
                    flush=True,
                )
        finished = time.time()
        fields_done = wait_fields(sandbox, stack, profiles) if stack.field_map else None
        sampler.finish()
        producer.wait()
        if path == "backfill":
            started = producer.ready_at() or started
        else:
            started = float(orjson.loads(producer.lines[-1][1])["first_publish"])
        members = sandbox.list_emails(list_id)
        expected = {email("u", i) for i in range(profiles)}
        ops = sandbox.account_stats(stack.key)
        ops["get_list"]["calls"] -= polls  # the bench's own membership polls
        return {
            "profiles": profiles,
            "started": started,
            "finished": finished,
            "sent": sent or finished,
            "fields_done": fields_done,
            "account": account,
            "path": path,
            "exact": members == expected,
            "members": len(members),
            "calls": sum(r["calls"] for r in ops.values()),
            "throttled": sum(r["throttled"] for r in ops.values()),
            "operations": ops,
            "worker_cpu": sampler.cpu_seconds("workers") - before["workers"],
            "redis_cpu": sampler.cpu_seconds("redis") - before["redis"],
            "sandbox_cpu": sampler.cpu_seconds("sandbox") - before["sandbox"],
            "worker_rss": sampler.peak_rss["workers"],
            "producer_rss": sampler.peak_rss["producer"],
            "producer_cpu": sampler.cpu_seconds("producer"),
        }
    finally:
        stack.stop()


def accepted(sandbox: Sandbox, key: str, op: str) -> int:
    """Items (profiles) of ``op`` the account's accepted calls have carried so far."""
    return int(sandbox.account_stats(key).get(op, {}).get("items", 0))


def wait_fields(sandbox: Sandbox, stack: EngineStack, profiles: int, timeout: float = 600) -> float:
    """When every member's mapped fields have been sent in bulk imports (subscribe mode sends
    them apart from the subscribes; force add in its imports)."""
    wait_until(lambda: accepted(sandbox, stack.key, "bulk_import_profiles") >= profiles,
               timeout, "the mapped fields all imported", interval=0.25)
    return time.time()
