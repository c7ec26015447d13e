"""How many 1,000-profile subscribe jobs per second the sandbox absorbs.

    uv run --frozen python -m sandbox.bench --jobs 300 --clients 4

Starts ``python -m sandbox`` in a subprocess (its own interpreter, as in real use)
at a high ``--speed`` so rate limits stay out of the way, posts pre-built jobs of
unique profiles from ``--clients`` threads, and reports accepted jobs per second
and the time until every job has completed. Validation is on unless ``--no-validate``.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import requests

HEADERS = {"Authorization": "Klaviyo-API-Key pk_bench", "revision": "2026-07-15",
           "Content-Type": "application/vnd.api+json"}


def job_body(list_id: str, job: int, size: int) -> bytes:
    """One subscribe job of ``size`` unique profiles."""
    marketing = {"email": {"marketing": {"consent": "SUBSCRIBED"}}}
    profiles = [{"type": "profile", "attributes": {"email": f"b{job}-{i}@example.com",
                                                   "subscriptions": marketing}}
                for i in range(size)]
    return orjson.dumps({"data": {
        "type": "profile-subscription-bulk-create-job",
        "attributes": {"profiles": {"data": profiles}},
        "relationships": {"list": {"data": {"type": "list", "id": list_id}}}}})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_up(url: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            requests.get(f"{url}/_sandbox/faults", timeout=1)
        except requests.ConnectionError:
            time.sleep(0.05)
        else:
            return
    raise RuntimeError("sandbox did not start")


def measure(url: str, jobs: int, clients: int, size: int) -> dict[str, Any]:
    """Post ``jobs`` jobs and wait for them; returns the figures."""
    created = requests.post(f"{url}/api/lists", headers=HEADERS, data=orjson.dumps(
        {"data": {"type": "list", "attributes": {"name": "bench"}}}), timeout=10)
    list_id = created.json()["data"]["id"]
    bodies = [job_body(list_id, j, size) for j in range(jobs)]
    local = __import__("threading").local()

    def post(body: bytes) -> int:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        return session.post(f"{url}/api/profile-subscription-bulk-create-jobs",
                            headers=HEADERS, data=body, timeout=30).status_code

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        statuses = list(pool.map(post, bodies))
    accepted_s = time.perf_counter() - started
    while True:
        listed = requests.get(f"{url}/_sandbox/subscribe-jobs", timeout=30).json()["data"]
        if sum(j["status"] == "complete" for j in listed) >= jobs:
            break
        time.sleep(0.05)
    done_s = time.perf_counter() - started
    return {"jobs": jobs, "profiles_per_job": size, "accepted": statuses.count(202),
            "accept_seconds": round(accepted_s, 2), "jobs_per_second": round(jobs / accepted_s, 1),
            "complete_seconds": round(done_s, 2),
            "completed_jobs_per_second": round(jobs / done_s, 1),
            "profiles_per_second": round(jobs * size / done_s)}


def measure_small(url: str, calls: int, clients: int) -> dict[str, Any]:
    """Small calls (profile look-ups by email) per second, each account under its burst."""
    local = __import__("threading").local()

    def get(n: int) -> int:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        headers = {**HEADERS, "Authorization": f"Klaviyo-API-Key pk_small_{n % 50}"}
        query = {"filter": f'equals(email,"b0-{n}@example.com")'}
        return session.get(f"{url}/api/profiles", params=query, headers=headers,
                           timeout=30).status_code

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        statuses = list(pool.map(get, range(calls)))
    seconds = time.perf_counter() - started
    return {"small_calls": calls, "small_ok": statuses.count(200),
            "small_calls_per_second": round(calls / seconds)}


def main() -> int:
    """Run the measurement against a fresh sandbox subprocess."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--no-validate", action="store_true")
    args = parser.parse_args()
    port = _free_port()
    command = [sys.executable, "-m", "sandbox", "--port", str(port), "--speed", "1000",
               "--profile", "fast", "--log-level", "warning",
               *(["--no-validate"] if args.no_validate else [])]
    server = subprocess.Popen(command)  # noqa: S603 - our own interpreter and module
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_up(url)
        result = measure(url, args.jobs, args.clients, args.size)
        result.update(measure_small(url, 2000, args.clients))
        result["validation"] = not args.no_validate
        print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    finally:
        server.terminate()
        server.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
