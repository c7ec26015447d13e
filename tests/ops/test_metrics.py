"""Prometheus metrics end to end (issue #18): the receiver's ``/metrics`` and the exporter
command, scraped while real workers export through the webhook; values derived from Redis
equal ``status --json`` and the sandbox's own call count."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from starlette.exceptions import StarletteDeprecationWarning

from core.dispatch import send_events
from core.events import Action, AudienceEvent
from core.metrics import BUCKETS, CallRecorder, RedisCollector, registry_for
from core.settings import Settings
from producers.webhook import create_app
from tests.conftest import wait_until
from tests.harness import ROOT, Stack
from worker.celery_app import create_app as create_celery_app

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

TOKEN = "hook-token-0123456789"
JOB = {"id": "vip", "audiences": ["vip_buyers"], "new_list_name": "Metrics",
       "backfill": False, "new_list_opt_in": "single"}
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def exe() -> str:
    return str(Path(sys.executable).with_name("klaviyo-export"))


def cli(stack: Stack, *args: str) -> str:
    proc = subprocess.run([exe(), *args], cwd=ROOT, env=stack.env(), capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc.stdout


def samples(text: str) -> Samples:
    """Every sample of a scrape, parsed by prometheus_client's own parser."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def body(email: str, event: str) -> dict[str, Any]:
    entry = {"id": "vip_buyers", "slug": "vip_buyers", "event": event,
             event: "2026-11-28T10:00:00Z"}
    return {"data": {"email": email, "segment_events": [entry]},
            "meta": {"object": "user", "timestamp": "2026-11-28T10:00:00Z"}}


@pytest.fixture
def receiver(stack: Stack) -> Iterator[TestClient]:
    stack.write_jobs(JOB)
    cli(stack, "start", "vip")
    stack.start_worker()
    settings = stack.settings().model_copy(update={"webhook_token": SecretStr(TOKEN)})
    celery = create_celery_app(settings)
    app = create_app(settings, stack.jobs_file, celery, redis.Redis.from_url(stack.redis_url))
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        yield client
    celery.close()


def test_metrics_during_a_run_parse_and_equal_status(stack: Stack, receiver: TestClient) -> None:
    """Scraped while 60 people arrive through the webhook (10 of them without a usable
    email), every scrape parses; once idle the job's values equal ``status --json`` and the
    calls counted equal the calls the sandbox answered."""
    # when people arrive through the webhook, and /metrics is scraped meanwhile
    scrapes = []
    for i in range(60):
        email = f"user{i}@example.com" if i % 6 else f"broken{i}@@example"
        assert receiver.post("/webhooks/lytics/vip", json=body(email, "enter")).status_code == 202
        if i % 10 == 0:
            scrapes.append(receiver.get("/metrics"))
    for i in range(1, 6):  # five leave again
        receiver.post("/webhooks/lytics/vip", json=body(f"user{i}@example.com", "exit"))
    members = {f"user{i}@example.com" for i in range(6, 60) if i % 6}
    stack.wait_for_members("vip", members, timeout=60)
    stack.assert_reconciled("vip", entered=None, members=len(members))
    # then every scrape was Prometheus text
    for resp in scrapes:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
        samples(resp.text)
    found = samples(receiver.get("/metrics").text)
    row = json.loads(cli(stack, "status", "vip", "--json"))[0]
    # and the job's values are status's
    # (a leaver whose enter and exit were both recorded before a flush was never added)
    assert value(found, "klaviyo_export_job_added_total", job="vip") == row["added"] >= 45
    assert value(found, "klaviyo_export_job_removed_total", job="vip") == row["removed"]
    assert row["added"] - row["removed"] == len(members)
    for reason, count in row["omitted"].items():
        assert value(found, "klaviyo_export_job_omitted_total", job="vip",
                     reason=reason) == count
    assert sum(row["omitted"].values()) == 10
    assert value(found, "klaviyo_export_job_pending_users", job="vip") == row["pending"] == 0
    assert value(found, "klaviyo_export_job_dead_letters", job="vip") == row["dead_lettered"]
    assert value(found, "klaviyo_export_job_counter", job="vip", field="added") == row["added"]
    assert value(found, "klaviyo_export_job_status", job="vip", status="ready") == 1
    # and every Klaviyo call the sandbox answered was counted, with its latency
    answered = stack.admin("GET", "stats")["total"]["calls"]
    calls = sum(v for (name, _), v in found.items() if name == "klaviyo_export_klaviyo_calls_total")
    latency = sum(v for (name, labels), v in found.items()
                  if name == "klaviyo_export_klaviyo_latency_seconds_count")
    assert calls == latency == answered > 0
    # and the queues, once drained, say so
    wait_until(lambda: all(
        value(samples(receiver.get("/metrics").text), "klaviyo_export_queue_depth", queue=q) == 0
        for q in ("realtime", "backfill", "maintenance")), timeout=30, message="queues drained")


def test_the_exporter_command_serves_the_same_values(stack: Stack, receiver: TestClient) -> None:
    receiver.post("/webhooks/lytics/vip", json=body("ann@example.com", "enter"))
    stack.wait_for_members("vip", {"ann@example.com"})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([exe(), "metrics", "--port", str(port)], cwd=ROOT, env=stack.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        def scrape() -> str | None:
            try:
                return requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            except requests.ConnectionError:
                return None

        text = wait_until(scrape, timeout=30, message="the exporter to answer")
        assert isinstance(text, str)
        found, served = samples(text), samples(receiver.get("/metrics").text)
        job_samples = {k for k in served if dict(k[1]).get("job") == "vip"}
        assert job_samples and all(found[k] == served[k] for k in job_samples)
        assert value(found, "klaviyo_export_job_added_total", job="vip") == 1
        assert value(found, "klaviyo_export_job_status", job="vip", status="ready") == 1
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class TestFromRedis:
    """The collector reads what any process wrote: nothing lives in one process's memory."""

    def test_queue_age_and_pending_age_come_from_redis(self, redis_url: str) -> None:
        client = redis.Redis.from_url(redis_url)
        prefix = f"m{time.time_ns()}"
        client.zadd(f"{prefix}:job:vip:pending", {"a@example.com": (time.time() - 30) * 1000})
        message = {"headers": {"published_at": time.time() - 12}, "body": ""}
        client.lpush(f"{prefix}:celery:realtime", json.dumps(message))
        client.lpush(f"{prefix}:celery:realtime", json.dumps({"headers": {}}))
        text = generate_latest(registry_for(RedisCollector(client, prefix, lambda: ["vip"])))
        found = samples(text.decode())
        assert 29 <= value(found, "klaviyo_export_job_oldest_pending_age_seconds", job="vip") < 60
        assert value(found, "klaviyo_export_queue_depth", queue="realtime") == 2
        assert 11 <= value(found, "klaviyo_export_queue_oldest_message_age_seconds",
                           queue="realtime") < 60

    def test_a_published_task_carries_its_publish_time(self, redis_url: str) -> None:
        """Every message our Celery app publishes is stamped, so the queue age is real."""
        prefix = f"m{time.time_ns()}"
        settings = Settings(redis_url=redis_url, key_prefix=prefix)  # type: ignore[arg-type]
        app = create_celery_app(settings)
        try:
            send_events(app, "vip", [AudienceEvent(audience="a", action=Action.ENTER,
                                                   ts_ns=time.time_ns(),
                                                   profile={"email": "a@example.com"})])
        finally:
            app.close()
        client = redis.Redis.from_url(redis_url)
        found = samples(generate_latest(registry_for(
            RedisCollector(client, prefix, lambda: []))).decode())
        assert value(found, "klaviyo_export_queue_depth", queue="realtime") == 1
        raw = client.lindex(f"{prefix}:celery:realtime", -1)
        assert raw is not None and json.loads(raw)["headers"]["published_at"] <= time.time()
        assert 0 <= value(found, "klaviyo_export_queue_oldest_message_age_seconds",
                          queue="realtime") < 30

    def test_awaiting_confirmation_and_the_last_audit_are_served(self, redis_url: str) -> None:
        client = redis.Redis.from_url(redis_url)
        prefix = f"m{time.time_ns()}"
        client.hset(f"{prefix}:job:vip:counters", mapping={"awaiting_confirmation": 7,
                                                             "last_error": "x"})
        client.set(f"{prefix}:job:vip:audit", json.dumps(
            {"missing": 3, "extra": 2, "actionable": 4, "at": 1_764_000_000.5}))
        collector = RedisCollector(client, prefix, lambda: ["vip", "new"])
        found = samples(generate_latest(registry_for(collector)).decode())
        assert value(found, "klaviyo_export_job_awaiting_confirmation", job="vip") == 7
        assert value(found, "klaviyo_export_job_counter", job="vip",
                     field="awaiting_confirmation") == 7
        assert ("klaviyo_export_job_counter", (("field", "last_error"), ("job", "vip"))) \
            not in found
        for kind, count in (("missing", 3), ("extra", 2), ("actionable", 4)):
            assert value(found, "klaviyo_export_job_audit_drift", job="vip", kind=kind) == count
        at = value(found, "klaviyo_export_job_audit_timestamp_seconds", job="vip")
        assert at == 1_764_000_000.5
        assert not any(dict(k[1]).get("job") == "new" for k in found
                       if k[0].startswith("klaviyo_export_job_audit"))

    def test_latency_buckets_from_two_recorders_add_up(self, redis_url: str) -> None:
        """Two processes' recorders (two clients) count into one histogram."""
        prefix = f"m{time.time_ns()}"
        for seconds in (0.02, 0.3, 40.0):
            CallRecorder(redis.Redis.from_url(redis_url), prefix).observe(
                "acct", "get_list", 200, seconds)
        CallRecorder(redis.Redis.from_url(redis_url), prefix).observe("acct", "get_list", 429, 0.1)
        client = redis.Redis.from_url(redis_url)
        found = samples(generate_latest(registry_for(
            RedisCollector(client, prefix, lambda: []))).decode())
        labels = {"account": "acct", "operation": "get_list"}
        assert value(found, "klaviyo_export_klaviyo_latency_seconds_count", **labels) == 4
        assert value(found, "klaviyo_export_klaviyo_latency_seconds_bucket", le="0.025",
                     **labels) == 1
        assert value(found, "klaviyo_export_klaviyo_latency_seconds_bucket", le="30.0",
                     **labels) == 3
        assert value(found, "klaviyo_export_klaviyo_rate_limited_total", **labels) == 1
        assert value(found, "klaviyo_export_klaviyo_calls_total", status="200", **labels) == 3
        assert len(BUCKETS) == 11
