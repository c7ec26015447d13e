"""Real-time latency: seconds from the webhook's 202 to the user's appearance in the list."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import requests

from bench.engine import AUDIENCE, EngineStack
from bench.stack import ROOT, Redis, Sandbox, fingerprint, free_port, stop, wait_until


def run_latency(
    workdir: Path,
    rds: Redis,
    sandbox: Sandbox,
    *,
    concurrency: int,
    seconds: float,
    per_post: int = 100,
    every: float = 0.1,
) -> dict[str, Any]:
    """Webhook acceptance → correct list, at ``per_post / every`` events a second, on an
    account nothing else uses."""
    sandbox.forget()
    stack = EngineStack(workdir, rds, sandbox, force_add=False, concurrency=concurrency)
    try:
        stack.start()
        return probe(stack, seconds=seconds, per_post=per_post, every=every)
    finally:
        stack.stop()


def probe(stack: EngineStack, *, seconds: float, job: str = "", per_post: int = 100,
          every: float = 0.1) -> dict[str, Any]:
    """The latency of live enters to ``stack``'s job ``job`` (its workers running), through
    a webhook receiver of its own."""
    sandbox, port = stack.sandbox, free_port()
    hook: subprocess.Popen[bytes] | None = None
    try:
        log = open(stack.workdir / f"webhook-{stack.tag}.log", "ab")  # noqa: SIM115 - lives as long as the process
        hook = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "console.cli",
                "webhook",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--insecure-no-auth",
            ],
            cwd=ROOT,
            env=stack.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}/webhooks/lytics/{stack.job_id(job)}"
        audience = stack.audience(job)

        def up() -> bool:
            try:
                return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok
            except requests.ConnectionError:
                return False

        wait_until(up, 30, "the webhook receiver")
        session = requests.Session()
        # Warm-up: one user, so list bootstrap is not part of the latency.
        session.post(
            url, data=orjson.dumps([lytics_body("warm@bench.example", audience)]), timeout=10
        ).raise_for_status()
        list_id = stack.list_id(name=job)
        wait_until(
            lambda: "warm@bench.example" in sandbox.list_emails(list_id), 120, "the warm-up user"
        )
        accepted: dict[str, float] = {}
        seen: dict[str, float] = {}
        stop_polling = threading.Event()

        def poll() -> None:
            while not stop_polling.is_set():
                now = time.time()
                for e in sandbox.list_emails(list_id):
                    seen.setdefault(e, now)
                time.sleep(0.1)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        posts, refused, n = int(seconds / every), 0, 0
        begin = time.time()
        for p in range(posts):
            time.sleep(max(0.0, begin + p * every - time.time()))
            emails = [f"rt{n + i}@bench.example" for i in range(per_post)]
            n += per_post
            resp = session.post(
                url, data=orjson.dumps([lytics_body(e, audience) for e in emails]), timeout=10
            )
            if resp.status_code != 202:
                refused += 1
                continue
            now = time.time()
            accepted.update(dict.fromkeys(emails, now))
        rate = n / (time.time() - begin)
        wait_until(
            lambda: set(accepted) <= set(seen),
            300,
            "every real-time user in the list",
            interval=0.2,
        )
        stop_polling.set()
        poller.join(5)
        lat = sorted(seen[e] - t for e, t in accepted.items())
        sent = to_acceptance(sandbox, stack.key, list_id, list(accepted.values()), begin)
        return {
            "events": len(accepted),
            "rate": rate,
            "refused_posts": refused,
            **percentiles(lat),
            **{f"accepted_{k}": v for k, v in percentiles(sent).items()},
        }
    finally:
        stop(hook)


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values) or [float("nan")]
    return {"p50": ordered[len(ordered) // 2],
            "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
            "max": ordered[-1]}


def to_acceptance(sandbox: Sandbox, key: str, list_id: str, posted: list[float],
                  since: float) -> list[float]:
    """Seconds from each user's 202 to Klaviyo's acceptance of the subscribe job that carried
    them: the product's own part of the latency, without Klaviyo's job delay. The list's
    subscribe jobs (created since ``since``) are taken in order and their profiles matched
    to the users in the order they were posted (a flush claims the longest-waiting first)."""
    jobs = sandbox.admin("GET", f"subscribe-jobs?account={fingerprint(key)}")["data"]
    times: list[float] = []
    for job in sorted((j for j in jobs if j["list_id"] == list_id), key=lambda j: j["created_at"]):
        created = datetime.fromisoformat(job["created_at"]).timestamp()
        if created >= since:
            times += [created] * int(job["total_count"])
    return [t - p for t, p in zip(times, sorted(posted), strict=False)]


def lytics_body(address: str, audience: str = AUDIENCE) -> dict[str, Any]:
    ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{time.time_ns() % 10**9:09d}Z"
    return {
        "id": "1",
        "data": {
            "email": address,
            "segment_events": [{"event": "enter", "slug": audience, "enter": ts}],
        },
        "meta": {"timestamp": ts},
    }
