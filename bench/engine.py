"""(c): this project's workers exporting the same audience, fed by a backfill or in real time."""

from __future__ import annotations

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

from bench.baselines import list_count
from bench.produce import email
from bench.stack import ROOT, Redis, Sandbox, TreeSampler, stop, wait_until
from core.keys import JobKeys
from worker.commands import worker_argv

AUDIENCE = "bench_audience"


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

    def start(self) -> subprocess.Popen[bytes]:
        self.jobs_file.write_text(
            f'[[jobs]]\nid = "{self.job}"\naudiences = ["{AUDIENCE}"]\n'
            f'new_list_name = "bench {self.tag}"\n'
            'new_list_opt_in = "single"\n'  # throughput, not confirmations
            f"force_add = {'true' if self.force_add else 'false'}\n{self.job_lines}"
            + (
                "field_map = { "
                + ", ".join(f'"{k}" = "{v}"' for k, v in self.field_map.items())
                + " }\n"
                if self.field_map
                else ""
            ),
            encoding="utf-8",
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

    def list_id(self, timeout: float = 120) -> str:
        client = redis.Redis.from_url(self.redis.url, decode_responses=True)
        return str(
            wait_until(
                lambda: client.hget(JobKeys(self.prefix, self.job).state, "list_id"),
                timeout,
                "the job's list",
                interval=0.1,
            )
        )

    def stop(self) -> None:
        for proc in self.procs:
            stop(proc)


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
) -> dict[str, Any]:
    """Export ``profiles`` new users; wait until the list holds exactly them.

    ``path="backfill"``: ``klaviyo-export start JOB --from-file`` (the clock starts when the
    list is ready and dispatch begins); ``path="realtime"``: ``send_events`` in bodies of
    1,000 (the clock starts at the first publish). ``prepare`` sets the account up before
    the workers start (not timed).
    """
    stack = EngineStack(workdir, rds, sandbox, force_add, concurrency, job_lines=job_lines)
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
            with source.open("wb") as fh:
                for i in range(profiles):
                    fh.write(b'{"email": "%s"}\n' % email("u", i).encode())
        # Fixed windows reward starting on a window: begin just before a minute opens, so that a
        # run of k x 750 subscribe calls can finish inside its k-th window (see the ceiling note).
        now = time.time()
        time.sleep(max(0.0, (int(now) // 60 + 1) * 60 - now - 1.0))
        sampler.start()
        started = time.time()
        if path == "backfill":
            cmd = [
                sys.executable,
                "-m",
                "console.cli",
                "start",
                stack.job,
                "--from-file",
                str(source),
            ]
        else:
            cmd = [
                sys.executable,
                "-m",
                "bench.produce",
                "--redis",
                rds.url,
                "--prefix",
                stack.prefix,
                "--job",
                stack.job,
                "--audience",
                AUDIENCE,
                "--profiles",
                str(profiles),
            ]
        producer = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=stack.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        sampler.watch("producer", producer.pid)
        lines: list[tuple[float, bytes]] = []

        def read_output() -> None:
            assert producer.stdout is not None
            for line in producer.stdout:
                lines.append((time.time(), line))

        reader = threading.Thread(target=read_output, daemon=True)
        reader.start()
        list_id = stack.list_id()
        polls, count, last_print = 0, 0, time.time()
        while count < profiles:
            if time.time() - started > timeout:
                raise TimeoutError(f"{count:,} of {profiles:,} after {timeout:.0f}s")
            if producer.poll() not in (None, 0):
                reader.join(5)
                raise RuntimeError(
                    b"".join(line for _, line in lines)[-3000:].decode(errors="replace")
                )
            time.sleep(0.25)
            count = list_count(sandbox, stack.key, list_id)
            polls += 1
            if time.time() - last_print >= 10:
                last_print = time.time()
                print(
                    f"    {time.time() - started:6.1f}s  {count:>10,} / {profiles:,} in the list",
                    flush=True,
                )
        finished = time.time()
        sampler.finish()
        producer.wait(timeout=120)
        reader.join(5)
        if path == "backfill":
            ready = [t for t, line in lines if b"ready" in line]
            started = ready[0] if ready else started
        else:
            produced = orjson.loads(lines[-1][1])
            started = float(produced["first_publish"])
        members = sandbox.list_emails(list_id)
        expected = {email("u", i) for i in range(profiles)}
        ops = sandbox.account_stats(stack.key)
        ops["get_list"]["calls"] -= polls  # the bench's own membership polls
        return {
            "profiles": profiles,
            "started": started,
            "finished": finished,
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
