"""The Lytics webhook receiver: authenticate → read → parse → enqueue → 202.

``POST`` (or ``PUT``/``PATCH``) ``/webhooks/lytics/{job_id}``. Refusals are typed
(:mod:`producers.webhook.errors`) and turned into statuses by one table; anything
transient is a 503 with ``Retry-After``, never a status Lytics drops. The queue
check comes before parsing, so an overloaded receiver spends no CPU on bodies it
cannot queue anyway. Klaviyo is never called here: the workers read the queue.

The token is checked before the job id: a request that no job would accept is a 401 whether
or not the job exists, so job ids cannot be enumerated; only a caller with a valid token
learns that a job is unknown (404).

Built from a path, the receiver re-reads the jobs file when it changes, as the workers do, so
a job or audience added while it runs is accepted at once; a change that does not load (or
names a job without a token) is logged and the last good file stays in force.

One JSON log line per request (logger ``producers.webhook``): job, status, counts,
milliseconds and the refusal message. Never the token, the query string or an email.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import redis
from celery import Celery
from kombu.exceptions import KombuError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from core.dispatch import send_events
from core.jobs import ExportJob, JobsFile
from core.jobswatch import JobsWatcher
from core.metrics import RedisCollector, registry_for
from core.redact import redact, show
from core.redisconn import NotReplicated, confirm_replicated, master_generation
from core.settings import Settings
from producers.lytics import ParsedBody, PayloadError, parse_body, parse_json
from producers.webhook.auth import is_authorized, job_tokens, shared_token
from producers.webhook.errors import (
    RETRY_AFTER_DOWN,
    RETRY_AFTER_REPLICATION,
    STATUS_FOR,
    Rejected,
    TooLarge,
    Unauthorized,
    Unavailable,
    UnknownJob,
)
from producers.webhook.gauge import QueueGauge, queue_key
from producers.webhook.openapi import DOCS_HTML, OPENAPI

log = logging.getLogger("producers.webhook")
BROKER_ERRORS = (KombuError, redis.RedisError, OSError)


def json_response(payload: dict[str, Any], status: int, retry_after: int | None = None) -> Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return Response(orjson.dumps(payload), status, headers, media_type="application/json")


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused as soon as its declared or counted size passes ``limit``."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"body of {int(declared):,} bytes exceeds the limit of {limit:,}")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise TooLarge(f"body exceeds the limit of {limit:,} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise Unavailable("client disconnected before the body was complete", 1) from None
    return b"".join(chunks)


@dataclass(frozen=True)
class Routing:
    """What the receiver takes from one version of the jobs file: the jobs and their tokens."""

    jobs: dict[str, ExportJob]
    tokens: dict[str, bytes | None]
    shared: bytes | None

    @classmethod
    def build(cls, jobs: JobsFile, settings: Settings, *, insecure_no_auth: bool) -> Routing:
        """Raises ConfigurationError when a job has no token (and auth is not switched off)."""
        tokens = job_tokens(jobs, settings, insecure_no_auth=insecure_no_auth)
        return cls({job.id: job for job in jobs.jobs}, tokens, shared_token(settings))

    def known_caller(self, request: Request) -> bool:
        """True when the request carries a token some job (or the shared token) accepts."""
        candidates = [*self.tokens.values(), *([self.shared] if self.shared else [])]
        return any(is_authorized(token, request) for token in candidates)


@dataclass(frozen=True)
class Receiver:
    """The request handlers, bound to a source of the current routing."""

    settings: Settings
    routing: Callable[[], Routing]
    celery_app: Celery
    redis_client: redis.Redis
    gauge: QueueGauge
    metrics_registry: CollectorRegistry

    async def receive(self, request: Request) -> Response:
        started = time.perf_counter()
        job_id = request.path_params["job_id"]
        try:
            parsed = await self._receive(job_id, request)
        except (Rejected, PayloadError) as exc:
            status, retry_after = STATUS_FOR[type(exc)], getattr(exc, "retry_after", None)
            _log_request(job_id, status, started, error=exc.message)
            return json_response({"error": exc.message}, status, retry_after)
        _log_request(job_id, 202, started, parsed=parsed)
        return json_response({"accepted": len(parsed.events), "ignored": parsed.ignored}, 202)

    async def _receive(self, job_id: str, request: Request) -> ParsedBody:
        routing = self.routing()
        job = routing.jobs.get(job_id)
        if job is None:
            if not routing.known_caller(request):  # the same answer as a known job's wrong token
                raise Unauthorized("missing or wrong token")
            raise UnknownJob(f"no export job {show(job_id)}")
        if not is_authorized(routing.tokens[job.id], request):
            raise Unauthorized("missing or wrong token")
        raw = await read_body(request, self.settings.webhook_max_body_bytes)
        return await run_in_threadpool(self._enqueue, job, raw)

    def _enqueue(self, job: ExportJob, raw: bytes) -> ParsedBody:
        """Check the queue, parse everything, publish, then make sure the events are held
        where a failover cannot lose them (blocking: runs in a thread).

        A 202 means: the events are on the Redis master and, when replicas are asked for
        (``REDIS_WAIT_REPLICAS``; 1 by default with Sentinel), acknowledged by that many
        within ``REDIS_WAIT_TIMEOUT_MS`` (``core.redisconn.confirm_replicated``). Otherwise
        503 with ``Retry-After``: Lytics sends the body again, and recording it twice is
        harmless (the desired state keeps the newest event).
        """
        self.gauge.check()
        parsed = parse_body(parse_json(raw), job)
        try:
            generation = master_generation(self.redis_client)
            send_events(self.celery_app, job.id, parsed.events)
            confirm_replicated(self.redis_client, self.settings, generation)
        except NotReplicated as exc:
            raise Unavailable(f"events not yet replicated: {exc}",
                              RETRY_AFTER_REPLICATION) from None
        except BROKER_ERRORS:
            raise Unavailable("Redis is unreachable", RETRY_AFTER_DOWN) from None
        return parsed

    async def healthz(self, request: Request) -> Response:
        return json_response({"status": "alive"}, 200)

    async def readyz(self, request: Request) -> Response:
        try:
            await run_in_threadpool(self.redis_client.ping)
        except BROKER_ERRORS:
            return json_response({"status": "not ready", "error": "Redis is unreachable"}, 503,
                                 RETRY_AFTER_DOWN)
        return json_response({"status": "ready", "jobs": len(self.routing().jobs)}, 200)

    async def metrics(self, request: Request) -> Response:
        """Prometheus text, read from Redis now (``core.metrics``; docs/metrics.md)."""
        try:
            body = await run_in_threadpool(generate_latest, self.metrics_registry)
        except BROKER_ERRORS:
            return json_response({"error": "Redis is unreachable"}, 503, RETRY_AFTER_DOWN)
        return Response(body, 200, media_type=CONTENT_TYPE_LATEST)

    async def openapi(self, request: Request) -> Response:
        return json_response(OPENAPI, 200)

    async def docs(self, request: Request) -> Response:
        return HTMLResponse(DOCS_HTML)


def _log_request(job_id: str, status: int, started: float, *, parsed: ParsedBody | None = None,
                 error: str | None = None) -> None:
    line: dict[str, Any] = {"msg": "webhook", "job": redact(job_id, 40), "status": status,
                            "ms": round((time.perf_counter() - started) * 1000, 1)}
    if parsed is not None:
        line.update(accepted=len(parsed.events), ignored=parsed.ignored, bodies=parsed.bodies)
    if error is not None:
        line["error"] = error
    log.log(logging.INFO if status < 500 else logging.WARNING, orjson.dumps(line).decode())


def routing_source(settings: Settings, jobs: JobsFile | Path, *,
                   insecure_no_auth: bool) -> Callable[[], Routing]:
    """A fixed routing for a ``JobsFile``; for a path, one re-read whenever the file changes.

    Raises ConfigurationError (JobsFileError for a path) when the first version is unusable.
    """
    def build(loaded: JobsFile) -> Routing:
        return Routing.build(loaded, settings, insecure_no_auth=insecure_no_auth)

    if isinstance(jobs, JobsFile):
        fixed = build(jobs)
        return lambda: fixed
    watcher = JobsWatcher(jobs, build)
    watcher.current()  # fail at start, with one line, rather than on the first request
    return watcher.current


def create_app(settings: Settings, jobs: JobsFile | Path, celery_app: Celery,
               redis_client: redis.Redis, *, insecure_no_auth: bool = False) -> Starlette:
    """The receiver's ASGI app; raises ConfigurationError when a job has no token.

    ``jobs`` is either the jobs themselves (fixed) or the jobs file's path (re-read on change).
    """
    routing = routing_source(settings, jobs, insecure_no_auth=insecure_no_auth)
    limit = settings.webhook_max_queue_depth
    gauge = QueueGauge(redis_client, queue_key(settings.key_prefix), limit)
    collector = RedisCollector(redis_client, settings.key_prefix, lambda: routing().jobs,
                               speed=settings.rate_limit_speed)
    receiver = Receiver(settings, routing, celery_app, redis_client, gauge,
                        registry_for(collector))
    routes = [
        Route("/webhooks/lytics/{job_id}", receiver.receive, methods=["POST", "PUT", "PATCH"]),
        Route("/healthz", receiver.healthz, methods=["GET"]),
        Route("/readyz", receiver.readyz, methods=["GET"]),
        Route("/metrics", receiver.metrics, methods=["GET"]),
        Route("/openapi.json", receiver.openapi, methods=["GET"]),
        Route("/docs", receiver.docs, methods=["GET"]),
    ]
    return Starlette(routes=routes)
