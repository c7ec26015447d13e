"""``make run``: the whole stack on embedded defaults, driven end to end.

Redis (``REDIS_URL`` when it answers, else a private ``redis-server``), the sandbox when
``KLAVIYO_API_KEY`` is not set, the webhook receiver, one worker, beat and Flower, all as
subprocesses in their own process groups. It backfills ``examples/sample-audience.jsonl``,
posts live enter and exit events through the webhook, waits (bounded) until the list holds
what it should, and prints a summary. Ctrl-C (or ``RUN_ONCE=1``) stops everything it started.

Every run uses its own ``KEY_PREFIX`` (``demo<timestamp>``), so reruns start clean.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from console.demo.audience import (
    DEMO_TOKEN,
    JOB_ID,
    JOBS_FILE,
    LIVE_EVENTS,
    ROOT,
    SAMPLE_AUDIENCE,
    demo_prefix,
    enter_body,
    expected_members,
    read_profiles,
    restamp,
    rfc3339,
)
from console.demo.backends import check_real_account, start_klaviyo, start_redis
from console.demo.processes import (
    DemoError,
    Processes,
    free_port,
    http_ok,
    interrupt,
    wait_for,
)
from console.demo.summary import Summary, format_summary, run_once
from core import redisconn
from core.settings import load_settings, settings_or_exit
from worker.commands import beat_argv, worker_argv
from worker.engine.normalize import normalize_email

FLOWER_PORT = 5555
SETTLE_TIMEOUT = 180.0
BODIES_PER_POST = 500


@dataclass
class Demo:
    environ: dict[str, str]
    procs: Processes
    started: float = field(default_factory=time.monotonic)
    env: dict[str, str] = field(default_factory=dict)
    sandbox_url: str | None = None
    flower_url: str | None = None
    webhook_url: str = ""
    backfill: str = ""

    @property
    def python(self) -> str:
        return sys.executable

    def start_services(self) -> None:
        env = self.env
        port = free_port()
        webhook = self.procs.spawn("webhook", [self.python, "-m", "console.cli", "webhook",
                                               "--host", "127.0.0.1", "--port", str(port)], env)
        worker = self.procs.spawn(
            "worker", worker_argv(f"demo-{env['KEY_PREFIX']}", python=self.python), env)
        self.procs.spawn("beat", beat_argv(self.python), env)
        flower_port = free_port(FLOWER_PORT)
        flower = self.procs.spawn("flower", [
            self.python, "-m", "celery", "-A", "worker", "flower", "--address=127.0.0.1",
            f"--port={flower_port}"], env)
        self.webhook_url = f"http://127.0.0.1:{port}/webhooks/lytics/{JOB_ID}"
        wait_for(lambda: http_ok(f"http://127.0.0.1:{port}/readyz") or not webhook.alive(), 60,
                 "the webhook receiver to be ready")
        if not webhook.alive():
            raise DemoError(f"the webhook receiver exited:\n{webhook.tail()}")
        wait_for(lambda: "ready." in worker.tail(20_000) or not worker.alive(), 90,
                 "the worker to be ready")
        if not worker.alive():
            raise DemoError(f"the worker exited:\n{worker.tail()}")
        url = f"http://127.0.0.1:{flower_port}"
        with contextlib.suppress(DemoError):
            wait_for(lambda: http_ok(f"{url}/healthcheck") or not flower.alive(), 30,
                     "Flower to answer")
        if flower.alive() and http_ok(f"{url}/healthcheck"):
            self.flower_url = url
        else:
            print(f"warning: Flower did not start (the demo goes on without it); see {flower.log}",
                  flush=True)

    def run_backfill(self, profiles: list[dict[str, Any]]) -> None:
        print(f"Backfill: klaviyo-export start {JOB_ID} --from-file "
              f"{SAMPLE_AUDIENCE.relative_to(ROOT)} --wait", flush=True)
        done = subprocess.run([self.python, "-m", "console.cli", "start", JOB_ID,  # noqa: S603
                               "--from-file", str(SAMPLE_AUDIENCE), "--wait"],
                              cwd=ROOT, env=self.env, timeout=SETTLE_TIMEOUT, check=False)
        if done.returncode == 0:
            self.backfill = "klaviyo-export start --from-file"
            return
        print(f"warning: the backfill command exited with {done.returncode}; "
              "sending the audience through the webhook instead", flush=True)
        self.backfill = "enter events through the webhook"
        stamp = rfc3339(time.time())
        bodies = [enter_body(p, stamp) for p in profiles]
        for start in range(0, len(bodies), BODIES_PER_POST):
            self.post(bodies[start:start + BODIES_PER_POST])
        print(f"  posted {len(bodies):,} profiles", flush=True)

    def post(self, bodies: list[dict[str, Any]]) -> dict[str, Any]:
        resp = requests.post(self.webhook_url, json=bodies, timeout=30,
                             headers={"Authorization": f"Bearer {self.env['WEBHOOK_TOKEN']}"})
        if resp.status_code != 202:
            raise DemoError(f"the webhook answered {resp.status_code}: {resp.text[:300]}")
        answer: dict[str, Any] = resp.json()
        return answer

    def status(self) -> dict[str, Any]:
        from console.commands.status import job_status  # noqa: PLC0415 - needs KEY_PREFIX set

        client = redisconn.url_client(self.env["REDIS_URL"], socket_connect_timeout=3)
        try:
            return job_status(client, self.env["KEY_PREFIX"], JOB_ID)
        finally:
            client.close()

    def list_emails(self, list_id: str) -> set[str]:
        resp = requests.get(f"{self.sandbox_url}/_sandbox/lists/{list_id}/emails", timeout=10)
        resp.raise_for_status()
        return {str(e).lower() for e in resp.json()["emails"]}

    def settled(self, expected: set[str]) -> bool:
        row = self.status()
        if row["status"] in {"failed", "auth_failed"}:
            raise DemoError(f"job {JOB_ID} is {row['status']}: {row['reason']}")
        if not row["list_id"] or row["pending"] or row["inflight"]:
            return False
        if self.sandbox_url is None:
            return True
        return self.list_emails(row["list_id"]) == expected


def main() -> int:
    settings_or_exit("demo")  # a bad setting: one line naming it, exit 2
    environ = dict(os.environ)
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="kae-demo-"))
    procs = Processes(workdir)
    demo = Demo(environ, procs)
    code = 1
    print(f"klaviyo-audience-export demo (workdir {workdir})", flush=True)
    try:
        code = _run(demo)
        if code == 0 and not run_once(environ):
            print("\nThe stack stays up; press Ctrl-C to stop everything the demo started.",
                  flush=True)
            _watch(procs)
    except DemoError as exc:
        print(f"demo: {exc}", file=sys.stderr, flush=True)
        code = 1
    except KeyboardInterrupt:
        print("\nstopping...", flush=True)
        code = 0 if code == 0 else 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        procs.stop()
        if code == 0 or not any(workdir.iterdir()):
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"logs kept in {workdir}", flush=True)
        print("stopped everything the demo started", flush=True)
    return code


def _run(demo: Demo) -> int:
    """Start everything, backfill, send the live events, and print what the list holds."""
    from core.jobs import load_jobs  # noqa: PLC0415 - after the environment is known

    profiles = read_profiles(SAMPLE_AUDIENCE)
    prefix = demo_prefix(time.time())
    _start(demo, profiles, prefix)
    job = load_jobs(JOBS_FILE).get(JOB_ID)
    backfilled = expected_members(profiles, [], job.audiences)
    wait_for(lambda: demo.settled(backfilled), SETTLE_TIMEOUT, "the backfill to reach the list",
             interval=1)
    print(f"Backfill applied: the list holds {len(backfilled):,} members", flush=True)
    expected = expected_members(profiles, _send_live_events(demo), job.audiences)
    matched = True
    try:
        wait_for(lambda: demo.settled(expected), SETTLE_TIMEOUT, "the list to match", interval=1)
    except DemoError as exc:
        print(f"warning: {exc}", flush=True)
        matched = False
    summary = _summary(demo, job.list_name(), len(expected), matched, prefix)
    print("\n" + "\n".join(format_summary(summary)), flush=True)
    return 0 if matched else 1


def _start(demo: Demo, profiles: list[dict[str, Any]], prefix: str) -> None:
    """Redis, Klaviyo (or the sandbox), the services, then the backfill; a real Klaviyo
    account is refused first, before anything starts (``check_real_account``)."""
    if demo.environ.get("KLAVIYO_API_KEY"):
        live = [body.get("data", {}).get("email")
                for body in json.loads(LIVE_EVENTS.read_text(encoding="utf-8"))]
        emails = [e for e in (normalize_email(v) for v in
                              [*(p.get("email") for p in profiles), *live]) if e]
        check_real_account(demo.environ, emails,
                           allow_real=load_settings().demo_allow_real_klaviyo)
    redis_url = start_redis(demo.environ, demo.procs)
    base = {k: v for k, v in demo.environ.items() if not k.startswith("CELERY_")}
    demo.env = {**base, "REDIS_URL": redis_url, "KEY_PREFIX": prefix,
                "EXPORT_JOBS_FILE": str(JOBS_FILE), "PYTHONUNBUFFERED": "1",
                "WEBHOOK_TOKEN": demo.environ.get("WEBHOOK_TOKEN") or DEMO_TOKEN}
    klaviyo_env, demo.sandbox_url = start_klaviyo(demo.environ, demo.procs, profiles, prefix)
    demo.env.update(klaviyo_env)
    demo.start_services()
    demo.run_backfill(profiles)


def _send_live_events(demo: Demo) -> list[dict[str, Any]]:
    """The shipped live events, stamped now, through the webhook; returns what was sent."""
    events = restamp(json.loads(LIVE_EVENTS.read_text(encoding="utf-8")), rfc3339(time.time()))
    answer = demo.post(events)
    print(f"Live events: {len(events)} bodies posted to the webhook ({answer['accepted']} events "
          "accepted): 3 new users enter, 2 members exit, 1 member leaves one of two audiences",
          flush=True)
    return events


def _summary(demo: Demo, list_name: str, expected: int, matched: bool, prefix: str) -> Summary:
    row = demo.status()
    members = None
    if demo.sandbox_url and row["list_id"]:
        members = len(demo.list_emails(row["list_id"]))
    return Summary(
        list_id=row["list_id"], list_name=list_name, members=members,
        expected=expected if demo.sandbox_url else None, matched=matched, status=row,
        flower_url=demo.flower_url, webhook_url=demo.webhook_url,
        klaviyo=f"sandbox {demo.sandbox_url}" if demo.sandbox_url
        else demo.env.get("KLAVIYO_BASE_URL", "https://a.klaviyo.com"),
        seconds=time.monotonic() - demo.started, backfill=demo.backfill, prefix=prefix)


def _watch(procs: Processes) -> None:
    warned: set[str] = set()
    while True:
        time.sleep(1)
        for child in procs.children:
            if not child.alive() and child.name not in warned:
                warned.add(child.name)
                print(f"warning: {child.name} exited ({child.proc.returncode}); see {child.log}",
                      flush=True)
