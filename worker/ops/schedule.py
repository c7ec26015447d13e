"""Beat: what runs periodically, and how only one scheduler runs it (celery-redis notes §7).

Beat uses RedBeat (through :mod:`worker.ops.beat`, which survives a Redis restart): the schedule
lives in Redis under ``{key_prefix}:redbeat:`` and every beat process takes one Redis lock at
start. A second beat blocks on that lock, polling every
``beat_max_loop_interval`` seconds, and takes over only when the active one stops renewing it
(``redbeat_lock_timeout`` after a crash). Each entry carries ``options.expires`` equal to its
period, so runs queued during an outage are dropped instead of replayed in a burst.

The periods are operational knobs of :class:`~core.settings.Settings`; tests shorten them.
"""

from __future__ import annotations

from typing import Any

from core import names
from core.keys import redbeat_prefix
from core.redisconn import redbeat_options
from core.settings import Settings
from worker.ops.beat import SCHEDULER

QUEUES = names.QUEUES
HEARTBEAT_TASK = names.HEARTBEAT
HEALTH_TASK = names.HEALTH


OpsSettings = Settings
"""Former home of the beat and health knobs, now fields of :class:`Settings` (one typed place)."""


def _entry(task: str, period: float, **options: Any) -> dict[str, Any]:
    return {"task": task, "schedule": period, "options": {"expires": period, **options}}


def beat_schedule(settings: Settings, ops: Settings | None = None) -> dict[str, dict[str, Any]]:
    """Every periodic entry; each expires after its own period (``ops``: periods, if apart)."""
    ops = ops or settings
    beat = ops.heartbeat_interval_seconds
    schedule = {
        "safety-flush": _entry(names.SWEEP, settings.sweep_interval_seconds),
        "list-bootstrap": _entry(names.BOOTSTRAP_ALL, settings.bootstrap_interval_seconds),
        # every list's recent joiners: extra drift (the incremental audit), and on double
        # opt-in lists who of the people awaiting confirmation confirmed; each job's pass is
        # due at its own cadence (CONFIRM_INTERVAL_SECONDS or AUDIT_INCREMENTAL_SECONDS)
        "confirmations": _entry(names.CONFIRM_ALL, settings.joiners_period,
                                queue=names.MAINTENANCE),
        # each job's full audit, every ``audit_every_hours``
        "full-audits": _entry(names.AUDIT_ALL, settings.audit_check_interval_seconds,
                              queue=names.MAINTENANCE),
        "health": _entry(HEALTH_TASK, ops.health_period, queue=names.MAINTENANCE),
        "optouts-refresh": _entry(names.OPTOUTS_REFRESH, settings.optouts_refresh_seconds,
                                  queue=names.MAINTENANCE),
    }
    for queue in QUEUES:
        schedule[f"heartbeat-{queue}"] = {
            **_entry(HEARTBEAT_TASK, beat, queue=queue),
            "args": (queue,),
        }
    return schedule


def beat_config(settings: Settings, ops: Settings | None = None) -> dict[str, Any]:
    """Celery settings that make beat a single RedBeat scheduler with a short lock."""
    ops = ops or settings
    return {
        "beat_scheduler": SCHEDULER,  # RedBeat, made to survive a Redis restart
        **redbeat_options(settings),  # the same Redis; with Sentinel, following the master
        "redbeat_key_prefix": redbeat_prefix(settings.key_prefix),
        "redbeat_lock_timeout": ops.beat_lock_timeout_seconds,
        "beat_max_loop_interval": ops.beat_max_loop_interval_seconds,
        "beat_schedule": beat_schedule(settings, ops),
    }

