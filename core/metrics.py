"""Prometheus metrics, derived from Redis at every scrape (docs/metrics.md names each one).

Nothing is counted in a process's memory: every value is read from the keys the workers
already keep (counters, pending sets, dead letters, limiter windows, queues, heartbeats) or
from the per-call statistics :class:`CallRecorder` adds to for each Klaviyo request. So any
number of worker processes on any number of machines give one right answer, and the webhook
receiver (``/metrics``) and ``klaviyo-export metrics`` serve the same text.

The per-job counters hash is read generically: every numeric field appears in
``klaviyo_export_job_counter{field=...}`` (a field another module adds shows up without a
change here), and the well-known ones have their own families too.

Queue age needs the publish time: :func:`stamp_publish_time` puts ``published_at`` into every
task message's headers (connected by ``worker.celery_app.create_app``, which producers and the
CLI use too); a message without it is not counted in the age.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import orjson
import redis
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

from contract.operations import BY_NAME
from core import names
from core.keys import (
    JobKeys,
    broker_queue_keys,
    call_stats_index_key,
    call_stats_key,
    heartbeat_key,
    rate_limit_key,
)

log = logging.getLogger(__name__)
NS = "klaviyo_export"
# latency bucket upper bounds, seconds (Klaviyo answers in 50 ms to a few seconds)
BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
WINDOWS = (("burst", "b", 1), ("steady", "s", 60), ("daily", "d", 86_400))
PUBLISHED_AT = "published_at"
KNOWN_PREFIXES = {"omitted:": "omitted", "dropped:": "dropped", "clamped:": "clamped",
                  "drift:": "drift"}
AWAITING = "awaiting_confirmation"  # the counters field of people awaiting confirmation
TOTALS = {"added": "added", "removed": "removed", "dead_lettered": "dead_lettered"}


def bucket_of(seconds: float) -> str:
    """The ``le`` label of the first bucket that holds ``seconds``."""
    for bound in BUCKETS:
        if seconds <= bound:
            return _le(bound)
    return "+Inf"


def _le(bound: float) -> str:
    return str(floatToGoString(bound))  # type: ignore[no-untyped-call]  # 30.0, 0.025


class CallRecorder:
    """Counts each Klaviyo request in Redis: calls per status, latency buckets, latency sum.

    One pipelined round trip per request, beside the limiter's own: the worker's client calls
    :meth:`observe` after every answer (status 0: no answer, the connection failed).
    """

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.redis, self.prefix = client, prefix

    def observe(self, account: str, operation: str, status: int, seconds: float) -> None:
        key = call_stats_key(self.prefix, account, operation)
        try:
            self._write(key, account, operation, status, seconds)
        except redis.RedisError:  # best effort: a metric never fails the call it measures
            log.debug("call metrics not written for %s", operation, exc_info=True)

    def _write(self, key: str, account: str, operation: str, status: int,
               seconds: float) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hincrby(key, "calls", 1)
        pipe.hincrby(key, f"status:{status}", 1)
        pipe.hincrby(key, f"le:{bucket_of(seconds)}", 1)
        pipe.hincrbyfloat(key, "sum", seconds)
        pipe.sadd(call_stats_index_key(self.prefix), f"{account}|{operation}")
        pipe.execute()


def stamp_publish_time(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Celery ``before_task_publish``: when the message was sent (for the queue age)."""
    if headers is not None:
        headers.setdefault(PUBLISHED_AT, time.time())


class RedisCollector(Collector):
    """Every metric of docs/metrics.md, read from Redis when scraped.

    ``jobs`` gives the job ids to report (the jobs file's); ``speed`` is the limiter's
    ``RATE_LIMIT_SPEED`` (window lengths are divided by it, as the limiter's are).
    """

    def __init__(self, client: redis.Redis, prefix: str, jobs: Callable[[], Iterable[str]], *,
                 speed: float = 1.0) -> None:
        self.redis, self.prefix, self.jobs, self.speed = client, prefix, jobs, speed

    def describe(self) -> Iterator[Metric]:
        return iter(())  # values come from Redis: nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        now = time.time()
        yield from self._jobs(now)
        pairs = self._pairs()
        yield from self._calls(pairs)
        yield from self._limiter(pairs)
        yield from self._queues(now)

    # --- per job ---------------------------------------------------------------------------
    def _jobs(self, now: float) -> Iterator[Metric]:
        job = ["job"]
        fam: dict[str, Any] = {
            "added": CounterMetricFamily(f"{NS}_job_added", "People added to the list", labels=job),
            "removed": CounterMetricFamily(f"{NS}_job_removed",
                                           "People counted in, then removed", labels=job),
            "dead_lettered": CounterMetricFamily(f"{NS}_job_dead_lettered",
                                                 "Dead letters written", labels=job),
            "omitted": CounterMetricFamily(f"{NS}_job_omitted",
                                           "People left out, by reason", labels=[*job, "reason"]),
            "dropped": CounterMetricFamily(f"{NS}_job_dropped",
                                           "People exported with a field left out, by reason",
                                           labels=[*job, "reason"]),
            "clamped": CounterMetricFamily(f"{NS}_job_clamped",
                                           "People whose event time was corrected, by reason",
                                           labels=[*job, "reason"]),
            "drift": CounterMetricFamily(f"{NS}_job_drift",
                                         "People whose removal Klaviyo never confirmed",
                                         labels=[*job, "reason"]),
        }
        generic = GaugeMetricFamily(f"{NS}_job_counter",
                                    "Every numeric field of the job's counters hash",
                                    labels=[*job, "field"])
        failed = GaugeMetricFamily(f"{NS}_job_failed_people",
                                   "People currently given up on (dead-lettered)", labels=job)
        awaiting = GaugeMetricFamily(f"{NS}_job_awaiting_confirmation",
                                     "People subscribed to a double opt-in list who have not "
                                     "confirmed yet", labels=job)
        gauges = {
            "pending": GaugeMetricFamily(f"{NS}_job_pending_users",
                                         "Users whose desired state is not yet applied",
                                         labels=job),
            "inflight": GaugeMetricFamily(f"{NS}_job_inflight_users",
                                          "Users held by a flusher", labels=job),
            "oldest": GaugeMetricFamily(f"{NS}_job_oldest_pending_age_seconds",
                                        "Age of the oldest pending change (0: none due)",
                                        labels=job),
            "letters": GaugeMetricFamily(f"{NS}_job_dead_letters",
                                         "Dead letters stored", labels=job),
            "drift_users": GaugeMetricFamily(f"{NS}_job_drift_users",
                                             "Users whose removal was never confirmed",
                                             labels=job),
            "waiting": GaugeMetricFamily(f"{NS}_job_removals_awaiting_profile",
                                         "Removals waiting for a Klaviyo profile", labels=job),
        }
        status = GaugeMetricFamily(f"{NS}_job_status", "1 for the job's current status",
                                   labels=[*job, "status"])
        audit = GaugeMetricFamily(f"{NS}_job_audit_drift",
                                  "People the last read-back audit found out of place, by kind "
                                  "(missing, extra, actionable)", labels=[*job, "kind"])
        audited = GaugeMetricFamily(f"{NS}_job_audit_timestamp_seconds",
                                    "When the last audit ran (epoch seconds)", labels=job)
        ids = list(self.jobs())
        pipe = self.redis.pipeline(transaction=False)  # one round trip for every job
        for job_id in ids:
            keys = JobKeys(self.prefix, job_id)
            pipe.hgetall(keys.counters)
            pipe.zcard(keys.pending)
            pipe.zcard(keys.inflight)
            pipe.zrange(keys.pending, 0, 0, withscores=True)
            pipe.llen(keys.dlq)
            pipe.zcard(keys.drift)
            pipe.hlen(keys.removal_waits)
            pipe.hget(keys.state, "status")
            pipe.get(keys.audit)
        answers = pipe.execute()
        for n, job_id in enumerate(ids):
            (counters, pending, inflight, first, letters, drift, waiting, state,
             last_audit) = answers[9 * n: 9 * (n + 1)]
            for raw_name, raw_value in counters.items():
                name, value = _text(raw_name), _number(raw_value)
                if value is None:
                    continue
                generic.add_metric([job_id, name], value)
                if name in TOTALS:
                    fam[TOTALS[name]].add_metric([job_id], value)
                elif name == "failed":
                    failed.add_metric([job_id], value)
                elif name == AWAITING:
                    awaiting.add_metric([job_id], value)
                for prefix, family in KNOWN_PREFIXES.items():
                    if name.startswith(prefix):
                        fam[family].add_metric([job_id, name.removeprefix(prefix)], value)
            for name in TOTALS.values():  # a job that counted nothing yet shows 0, not nothing
                if not any(s.labels == {"job": job_id} for s in fam[name].samples):
                    fam[name].add_metric([job_id], 0)
            oldest = max(0.0, now - first[0][1] / 1000) if first else 0.0
            for name, value in (("pending", pending), ("inflight", inflight), ("oldest", oldest),
                                ("letters", letters), ("drift_users", drift),
                                ("waiting", waiting)):
                gauges[name].add_metric([job_id], float(value))
            status.add_metric([job_id, _text(state) or "new"], 1)
            _audit(job_id, last_audit, audit, audited)
        yield from fam.values()
        yield generic
        yield failed
        yield awaiting
        yield from gauges.values()
        yield status
        yield audit
        yield audited

    # --- per account and operation -----------------------------------------------------------
    def _pairs(self) -> list[tuple[str, str]]:
        raw = self.redis.smembers(call_stats_index_key(self.prefix))
        pairs = [tuple(_text(m).split("|", 1)) for m in raw]
        return sorted((p[0], p[1]) for p in pairs if len(p) == 2)

    def _calls(self, pairs: list[tuple[str, str]]) -> Iterator[Metric]:
        labels = ["account", "operation"]
        calls = CounterMetricFamily(f"{NS}_klaviyo_calls", "Klaviyo requests by answer status "
                                    "(0: no answer)", labels=[*labels, "status"])
        limited = CounterMetricFamily(f"{NS}_klaviyo_rate_limited",
                                      "Klaviyo answers 429", labels=labels)
        latency = HistogramMetricFamily(f"{NS}_klaviyo_latency_seconds",
                                        "Klaviyo request latency", labels=labels)
        pipe = self.redis.pipeline(transaction=False)
        for account, op in pairs:
            pipe.hgetall(call_stats_key(self.prefix, account, op))
        for (account, op), raw in zip(pairs, pipe.execute(), strict=True):
            stats = {_text(k): _text(v) for k, v in raw.items()}
            for name, value in stats.items():
                if name.startswith("status:"):
                    calls.add_metric([account, op, name.removeprefix("status:")], float(value))
            limited.add_metric([account, op], float(stats.get("status:429", 0)))
            running, buckets = 0.0, []
            for bound in (*map(_le, BUCKETS), "+Inf"):
                running += float(stats.get(f"le:{bound}", 0))
                buckets.append((bound, running))
            latency.add_metric([account, op], buckets, float(stats.get("sum", 0)))
        yield calls
        yield limited
        yield latency

    def _limiter(self, pairs: list[tuple[str, str]]) -> Iterator[Metric]:
        used = GaugeMetricFamily(f"{NS}_limiter_utilisation",
                                 "Share of Klaviyo's limit used in the current window",
                                 labels=["account", "operation", "window"])
        cooldown = GaugeMetricFamily(f"{NS}_limiter_cooldown_seconds",
                                     "Shared pause after a 429, seconds left",
                                     labels=["account", "operation"])
        known = [(a, op) for a, op in pairs if op in BY_NAME]
        pipe = self.redis.pipeline(transaction=False)
        pipe.time()
        for account, op_name in known:
            for _window, suffix, _length in WINDOWS:
                pipe.hmget(rate_limit_key(self.prefix, account, op_name, suffix), ["w", "n"])
            pipe.pttl(rate_limit_key(self.prefix, account, op_name, "cd"))
        answers = pipe.execute()
        seconds, micros = answers[0]
        now_us = int(seconds) * 1_000_000 + int(micros)
        step = len(WINDOWS) + 1
        for i, (account, op_name) in enumerate(known):
            op = BY_NAME[op_name]
            limits = {"burst": op.burst, "steady": op.steady, "daily": op.daily}
            mine = answers[1 + i * step: 1 + (i + 1) * step]
            for (window, _suffix, length), (w, n) in zip(WINDOWS, mine, strict=False):
                limit = limits[window]
                if not limit:
                    continue
                index = math.floor(now_us / (length * 1_000_000 / self.speed))
                current = int(_text(n) or 0) if w is not None and int(_text(w)) == index else 0
                used.add_metric([account, op_name, window], current / limit)
            cooldown.add_metric([account, op_name], max(int(mine[-1]), 0) / 1000)
        yield used
        yield cooldown

    # --- per queue --------------------------------------------------------------------------
    def _queues(self, now: float) -> Iterator[Metric]:
        depth = GaugeMetricFamily(f"{NS}_queue_depth", "Messages waiting", labels=["queue"])
        age = GaugeMetricFamily(f"{NS}_queue_oldest_message_age_seconds",
                                "Age of the oldest waiting message (0: none)", labels=["queue"])
        beat = GaugeMetricFamily(f"{NS}_heartbeat_age_seconds",
                                 "Seconds since a worker consuming the queue ran a heartbeat",
                                 labels=["queue"])
        pipe = self.redis.pipeline(transaction=False)
        for queue in names.QUEUES:
            for key in broker_queue_keys(self.prefix, queue):
                pipe.llen(key)
                pipe.lindex(key, -1)
            pipe.get(heartbeat_key(self.prefix, queue))
        answers = iter(pipe.execute())
        for queue in names.QUEUES:
            waiting, stamps = 0, []
            for _key in broker_queue_keys(self.prefix, queue):
                waiting += int(next(answers))
                stamp = _published(next(answers))
                if stamp is not None:
                    stamps.append(stamp)
            depth.add_metric([queue], float(waiting))
            age.add_metric([queue], max(0.0, now - min(stamps)) if stamps else 0.0)
            last = next(answers)
            if last is not None:
                beat.add_metric([queue], max(0.0, now - float(_text(last))))
        yield depth
        yield age
        yield beat


def _audit(job_id: str, raw: bytes | str | None, drift: GaugeMetricFamily,
           at: GaugeMetricFamily) -> None:
    """The last audit's summary (``JobKeys.audit``, written by the audit), when there is one."""
    if not raw:
        return
    try:
        summary = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return
    if not isinstance(summary, dict):
        return
    for kind in ("missing", "extra", "actionable"):
        if isinstance(summary.get(kind), int | float):
            drift.add_metric([job_id, kind], float(summary[kind]))
    if isinstance(summary.get("at"), int | float):
        at.add_metric([job_id], float(summary["at"]))


def registry_for(collector: RedisCollector) -> CollectorRegistry:
    """A registry holding only ``collector`` (no per-process default metrics)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def _published(raw: bytes | str | None) -> float | None:
    if raw is None:
        return None
    try:
        value = orjson.loads(raw).get("headers", {}).get(PUBLISHED_AT)
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return float(value) if isinstance(value, int | float) else None


def _number(value: bytes | str) -> float | None:
    try:
        return float(_text(value))
    except ValueError:
        return None


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")
