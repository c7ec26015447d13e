"""The export engine: Celery app, tasks, and the Klaviyo client they use.

``app`` is built on first access, not at import, so that importing any
``worker.*`` module (the CLI does) cannot fail before settings are checked.
"""

from __future__ import annotations

from typing import Any

__all__ = ["app"]


def __getattr__(name: str) -> Any:
    if name == "app":
        from worker.celery_app import app  # noqa: PLC0415 - built on first use, see above

        return app
    raise AttributeError(name)
