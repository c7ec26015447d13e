"""The Celery app: broker on Redis, configured for no loss (see celery-redis notes §0-§1).

``celery -A worker worker`` and ``celery -A worker beat`` find ``app`` here
through ``worker/__init__.py``. Tasks live in ``worker.tasks`` (one module per queue family).
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu.entity import Queue

from core import names
from core.keys import celery_prefix
from core.redisconn import celery_urls
from core.settings import Settings, load_settings
from worker.ops import observability
from worker.ops.broker import SENTINEL_TRANSPORT, TRANSPORT
from worker.ops.schedule import QUEUES, beat_config

__all__ = ["QUEUES", "app", "celery_config", "create_app"]


def transport_options(settings: Settings) -> dict[str, dict[str, Any] | int]:
    """Redis transport settings: the visibility timeout must be set in all three places.

    With Sentinel, both the broker and the result backend also get the master's name and
    how to talk to the sentinels (``core.redisconn.celery_urls``).
    """
    vt = settings.visibility_timeout_seconds
    keyprefix = celery_prefix(settings.key_prefix)
    _, sentinel = celery_urls(settings)
    return {
        "broker_transport_options": {
            **sentinel,
            "visibility_timeout": vt,
            "socket_keepalive": True,
            "global_keyprefix": keyprefix,
            # sweep for messages a dead worker left unacked every 10 s, not every 100 s
            "unacked_restore_interval": 10,
            "unacked_restore_throttle": 1,
            # a worker killed mid-sweep holds the sweep's mutex until it expires (default 300 s)
            "unacked_mutex_expire": 30,
        },
        "result_backend_transport_options": {
            **sentinel,
            "visibility_timeout": vt,
            "global_keyprefix": keyprefix,
        },
        "visibility_timeout": vt,
    }


def celery_config(settings: Settings) -> dict[str, Any]:
    """Every setting here is chosen for at-least-once delivery without loss."""
    url, _ = celery_urls(settings)
    sentinel = settings.redis_target.is_sentinel
    return {
        "broker_url": url,
        # kombu's Redis (or Sentinel) transport, fixed to survive a restart or a failover
        "broker_transport": SENTINEL_TRANSPORT if sentinel else TRANSPORT,
        "result_backend": url,  # only backfill chords store results
        **transport_options(settings),
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "task_ignore_result": True,
        "result_expires": 7 * 86400,
        "result_backend_always_retry": True,
        "task_time_limit": 300,
        "task_soft_time_limit": 240,
        "worker_disable_rate_limits": True,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_default_queue": names.REALTIME,
        "task_queues": [Queue(name) for name in QUEUES],  # type: ignore[no-untyped-call]
        "task_send_sent_event": True,
        "worker_send_task_events": True,
        "timezone": "UTC",
        **beat_config(settings),
    }


def create_app(settings: Settings | None = None) -> Celery:
    settings = settings or load_settings()
    include = ["worker.tasks.export", "worker.tasks.ops", "worker.tasks.backfill"]
    app = Celery("klaviyo_audience_export", include=include)
    app.conf.update(celery_config(settings))
    observability.connect_signals()
    return app


app = create_app()
