"""The Lytics webhook receiver (ASGI): ``create_app(settings, jobs, celery_app, redis_client)``."""

from producers.webhook.app import create_app

__all__ = ["create_app"]
