"""Sentry and logging, both scrubbed: no API key, token or unmasked email ever leaves a process.

- :func:`scrub` masks one string: ``pk_…`` keys, the configured token values, emails (``redact``).
- :func:`scrub_event` is Sentry's ``before_send``: it walks the whole event (message, exception
  values, breadcrumbs, extra, request, stack-frame variables) and blanks secret-named fields.
- :class:`StructuredFormatter` writes one JSON line per log record, scrubbed.
- :func:`connect_signals` initialises both in worker, beat and prefork children.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

import sentry_sdk
from celery import signals
from sentry_sdk.integrations.celery import CeleryIntegration

from core.metrics import stamp_publish_time
from core.redact import redact
from core.settings import Settings, load_settings

FILTERED = "[Filtered]"
_API_KEY = re.compile(r"pk_[A-Za-z0-9_\-]+")
_SECRET_NAME = re.compile(
    r"authorization|api[-_]?key|token|secret|password|passwd|cookie|dsn", re.IGNORECASE
)
_secrets: set[str] = set()


def remember_secrets(settings: Settings) -> None:
    """Token values to mask wherever they appear (keys are caught by their ``pk_`` shape)."""
    for value in (settings.webhook_token, settings.lytics_api_token, settings.klaviyo_api_key,
                  settings.sentry_dsn):
        if value is not None and len(value.get_secret_value()) >= 6:
            _secrets.add(value.get_secret_value())


def scrub(text: str) -> str:
    """``text`` without keys, known tokens or readable emails."""
    for secret in _secrets:
        text = text.replace(secret, FILTERED)
    return redact(_API_KEY.sub("pk_***", text))


def _walk(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: FILTERED if isinstance(k, str) and _SECRET_NAME.search(k) and v else _walk(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_walk(v) for v in value)
    return value


def scrub_event(event: dict[str, Any], hint: dict[str, Any] | None = None) -> dict[str, Any]:
    """Sentry ``before_send`` / ``before_breadcrumb``: the whole event, recursively scrubbed."""
    scrubbed: dict[str, Any] = _walk(event)
    return scrubbed


def init_sentry(settings: Settings, *, transport: Any = None,
                component: str = "worker") -> bool:
    """Start Sentry when ``SENTRY_DSN`` is set (or a transport is given); False otherwise."""
    remember_secrets(settings)
    dsn = settings.sentry_dsn.get_secret_value() if settings.sentry_dsn else None
    if dsn is None and transport is None:
        return False
    sentry_sdk.init(
        dsn=dsn or "https://public@sentry.invalid/1",
        transport=transport,
        send_default_pii=False,
        include_local_variables=True,
        before_send=cast(Any, scrub_event),
        before_send_transaction=cast(Any, scrub_event),
        before_breadcrumb=cast(Any, scrub_event),
        integrations=[CeleryIntegration()],
        server_name=component,
        default_integrations=True,
    )
    return True


# a job entering one of these states is a Sentry event at this level; ``ready`` only when it
# comes back from one of them
ALERT_LEVELS = {"failed": "error", "auth_failed": "error", "paused": "warning",
                "stopped": "warning", "ready": "info"}


def alert_job_state(job_id: str, status: str, reason: str, before: str) -> bool:
    """One Sentry event for a job's state change (auth failed, list deleted, paused, stopped,
    back to ready), grouped per job and state, scrubbed like every event; False when Sentry is
    off or the change is not one to alert on."""
    level = ALERT_LEVELS.get(status)
    if level is None or (status == "ready" and before not in ALERT_LEVELS):
        return False
    return _alert(job_id, status, level,
                  f"job {job_id} is {status} (was {before or 'new'}): {reason}",
                  {"job_status_before": before or "new"})


def alert_brake_engaged(job_id: str, wanted: int, of: int, share: float) -> bool:
    """One Sentry warning when a job's removal brake engages (``worker/state/brake.py`` calls
    it once per engagement), grouped per job, scrubbed; False when Sentry is off."""
    return _alert(job_id, "brake_engaged", "warning",
                  f"job {job_id}: removal brake engaged: {wanted:,} of {of:,} members would "
                  f"leave (more than {share:.0%}); removals wait for "
                  f"`klaviyo-export brake release {job_id}`", {})


def _alert(job_id: str, status: str, level: str, message: str, tags: dict[str, str]) -> bool:
    if not sentry_sdk.get_client().is_active():
        return False
    with sentry_sdk.new_scope() as scope:
        scope.set_tag("job", job_id)
        scope.set_tag("job_status", status)
        for name, value in tags.items():
            scope.set_tag(name, value)
        scope.fingerprint = ["klaviyo-export-job-state", job_id, status]
        sentry_sdk.capture_message(scrub(message), level=cast(Any, level))
    return True


class StructuredFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and exception), all scrubbed."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for attr in ("task_name", "task_id", "processName"):
            if hasattr(record, attr):
                entry[attr] = getattr(record, attr)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return scrub(json.dumps(entry, default=str))


class ScrubFilter(logging.Filter):
    """Masks a record in place, for handlers that keep their own formatter."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = scrub(record.getMessage())
        record.args = None
        return True


def structure(logger: logging.Logger) -> None:
    """Give every handler of ``logger`` the structured, scrubbed formatter."""
    for handler in logger.handlers:
        handler.setFormatter(StructuredFormatter())
        if not any(isinstance(f, ScrubFilter) for f in handler.filters):
            handler.addFilter(ScrubFilter())


def _on_setup_logger(logger: logging.Logger | None = None, **_: Any) -> None:
    remember_secrets(load_settings())
    for target in (logger, logging.getLogger(), logging.getLogger("celery")):
        if target is not None:
            structure(target)


def _on_process_start(**_: Any) -> None:
    init_sentry(load_settings())


def _mask_published(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Whatever sent a task, Flower and the logs see its arguments masked."""
    for field in ("argsrepr", "kwargsrepr"):
        if headers and isinstance(headers.get(field), str):
            headers[field] = scrub(headers[field])


def connect_signals() -> None:
    """Scrubbed logging for worker and beat; Sentry in the worker parent, children and beat."""
    handlers: list[tuple[signals.Signal, Callable[..., None]]] = [
        (signals.after_setup_logger, _on_setup_logger),
        (signals.after_setup_task_logger, _on_setup_logger),
        (signals.celeryd_init, _on_process_start),
        (signals.worker_process_init, _on_process_start),
        (signals.beat_init, _on_process_start),
        (signals.before_task_publish, _mask_published),
        (signals.before_task_publish, stamp_publish_time),  # the queue-age metric reads it
    ]
    for signal, handler in handlers:
        signal.connect(handler, weak=False)


__all__ = ["alert_brake_engaged", "alert_job_state", "connect_signals", "init_sentry", "scrub",
           "scrub_event", "structure"]
