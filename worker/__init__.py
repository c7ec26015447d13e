"""The export engine: Celery app, tasks, and the Klaviyo client they use.

``app`` is built on first access, not at import, so that importing any
``worker.*`` module (the CLI does) cannot fail before settings are checked. That first
access is how ``celery -A worker worker|beat|flower`` finds the app: a bad setting there
ends the process with one line naming the variable and exit status 2, not a traceback.
"""

from __future__ import annotations

from typing import Any

__all__ = ["app"]


def __getattr__(name: str) -> Any:
    if name == "app":
        from core.settings import settings_or_exit  # noqa: PLC0415 - see above

        settings_or_exit("celery")
        from worker.celery_app import app  # noqa: PLC0415 - built on first use, see above

        return app
    raise AttributeError(name)
