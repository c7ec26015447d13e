"""Fixtures for the producer tests: a job, settings on the private Redis, a receiver client."""

from __future__ import annotations

import socket
import uuid
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from celery import Celery
from lytics_samples import TOKEN, VIP_SLUG
from pydantic import SecretStr
from starlette.exceptions import StarletteDeprecationWarning

from core.jobs import ExportJob, JobsFile
from core.settings import Settings
from producers.webhook import create_app
from worker.celery_app import create_app as create_celery_app

with warnings.catch_warnings():  # the lock has httpx, not httpx2; TestClient works with both
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient


@pytest.fixture
def job() -> ExportJob:
    """A job exporting two audiences by slug, reading email and first_name."""
    return ExportJob(id="vip", audiences=(VIP_SLUG, "churn_risk"),
                     field_map={"first_name": "first_name"})


@pytest.fixture
def settings(redis_url: str) -> Settings:
    """Settings on the private Redis, with a key prefix of this test's own."""
    return Settings(redis_url=redis_url, key_prefix=f"t{uuid.uuid4().hex[:10]}",
                    webhook_token=SecretStr(TOKEN))


@pytest.fixture
def prefix(settings: Settings) -> str:
    return settings.key_prefix


@pytest.fixture
def celery_app(settings: Settings) -> Iterator[Celery]:
    app = create_celery_app(settings)
    yield app
    app.close()


@pytest.fixture
def make_client(settings: Settings, celery_app: Celery,
                job: ExportJob) -> Iterator[Callable[..., TestClient]]:
    """Build a receiver client; keyword arguments override settings, ``jobs`` the jobs."""
    clients: list[TestClient] = []

    def build(*, jobs: tuple[ExportJob, ...] | None = None, insecure_no_auth: bool = False,
              **overrides: Any) -> TestClient:
        merged = settings.model_copy(update=overrides)
        app = create_app(merged, JobsFile(jobs=jobs or (job,)), celery_app,
                         redis.Redis.from_url(str(merged.redis_url)),
                         insecure_no_auth=insecure_no_auth)
        clients.append(TestClient(app, raise_server_exceptions=False))
        return clients[-1]

    yield build
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    """The receiver for ``job``, with the shared token."""
    return make_client()


@pytest.fixture
def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def free_tcp_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
