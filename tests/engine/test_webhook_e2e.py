"""From Lytics' webhook to the Klaviyo list: every body shape changes the sandbox as it should."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from pydantic import SecretStr
from starlette.exceptions import StarletteDeprecationWarning

from core.jobs import load_jobs
from producers.webhook import create_app
from tests.harness import Stack
from worker.celery_app import create_app as create_celery_app

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

TOKEN = "hook-token-0123456789"
VIP_ID = "efdcc4da20554be02e90c563f69bc0ec"


def entry(
    event: str, at: str | None, segment: str = VIP_ID, slug: str = "vip_buyers"
) -> dict[str, Any]:
    out: dict[str, Any] = {"id": segment, "event": event, "slug": slug}
    if at:
        out[event] = at
    return out


def body(
    email: str,
    *entries: dict[str, Any],
    meta_ts: str = "2026-11-28T10:00:00.000000000Z",
    **fields: Any,
) -> dict[str, Any]:
    return {
        "id": "1576",
        "data": {"email": email, **fields, "segment_events": list(entries)},
        "meta": {"object": "user", "timestamp": meta_ts},
    }


@pytest.fixture
def receiver(stack: Stack) -> Iterator[TestClient]:
    stack.write_jobs(
        {
            "id": "vip",
            "audiences": [VIP_ID, "churn_risk"],
            "new_list_name": "Hook",
            "new_list_opt_in": "single",
            "field_map": {"first_name": "first_name"},
        }
    )
    stack.start_worker()
    settings = stack.settings().model_copy(update={"webhook_token": SecretStr(TOKEN)})
    celery = create_celery_app(settings)
    app = create_app(
        settings, load_jobs(stack.jobs_file), celery, redis.Redis.from_url(stack.redis_url)
    )
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        yield client
    celery.close()


def test_every_shape_reaches_the_list(stack: Stack, receiver: TestClient) -> None:
    """Single, batched, CloudEvents, nanosecond and offset times, change, unselected audiences."""
    # given a single body, a batch of two, and a CloudEvents envelope
    single = body(
        "ann@example.com", entry("enter", "2026-11-28T10:00:00.123456789Z"), first_name="Ann"
    )
    batch = [
        body("bob@example.com", entry("enter", "2026-11-28T03:00:00.000000001-07:00")),
        body(
            "cat@example.com",
            entry("enter", None),
            entry("enter", "2026-11-28T10:00:01Z", segment="x", slug="churn_risk"),
        ),
    ]
    cloud = {
        "specversion": "1.0",
        "id": "9",
        "type": "com.lytics.audience.user.event",
        "source": "work/1",
        "time": "2026-11-28T10:00:02.5+02:00",
        "data": {"email": "dan@example.com", "segment_events": [entry("enter", None)]},
    }
    ignored = body(
        "eve@example.com", entry("enter", "2026-11-28T10:00:00Z", segment="other", slug="other")
    )
    # when they are posted
    for payload in (single, batch, cloud, ignored):
        assert receiver.post("/webhooks/lytics/vip", json=payload).status_code == 202
    # then the selected users are on the list, the unselected one is not
    stack.wait_for_members(
        "vip", {"ann@example.com", "bob@example.com", "cat@example.com", "dan@example.com"}
    )
    # when Ann's name changes and Bob exits (later than his enter, given with an offset)
    receiver.post(
        "/webhooks/lytics/vip",
        json=body(
            "ann@example.com",
            entry("change", None),
            first_name="Anna",
            meta_ts="2026-11-28T10:00:05Z",
        ),  # a change carries no time of its own
    )
    receiver.post(
        "/webhooks/lytics/vip",
        json=body("bob@example.com", entry("exit", "2026-11-28T10:00:00.5Z")),
    )
    # then Bob is off the list and Ann's profile carries the new name
    stack.wait_for_members("vip", {"ann@example.com", "cat@example.com", "dan@example.com"})
    stack.wait_profile("ann@example.com", lambda p: p.get("first_name") == "Anna")
    assert int(stack.counters("vip")["removed"]) == 1
