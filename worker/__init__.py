"""The export engine: Celery app, tasks, and the Klaviyo client they use."""

from worker.celery_app import app

__all__ = ["app"]
