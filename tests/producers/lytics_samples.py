"""Test helpers: webhook bodies shaped as Lytics sends them, and a reader for the realtime queue."""

from __future__ import annotations

import base64
import json
from typing import Any

import redis

TS = "2023-05-25T23:09:59.872199615Z"
TS_NS = 1_685_056_199_872_199_615
META_TS = "2023-05-25T23:10:04.651979584Z"
META_TS_NS = 1_685_056_204_651_979_584
VIP_ID = "efdcc4da20554be02e90c563f69bc0ec"
VIP_SLUG = "vip_buyers"
TOKEN = "s3cret-token-for-tests"


def segment_event(event: str = "enter", *, segment_id: object = VIP_ID,
                  slug: str | None = VIP_SLUG, ts: str | None = TS) -> dict[str, Any]:
    """One ``segment_events[]`` entry; ``ts`` goes under the key named after the event."""
    entry: dict[str, Any] = {"event": event}
    if segment_id is not None:
        entry["id"] = segment_id
    if slug is not None:
        entry["slug"] = slug
    if ts is not None and event != "change":
        entry[event] = ts
    return entry


def body(*entries: dict[str, Any], email: str = "ann@example.com", meta_ts: str | None = META_TS,
         **fields: Any) -> dict[str, Any]:
    """The default Lytics body: ``id``, ``data`` (profile + segment_events), ``meta``."""
    data = {"email": email, "_uid": "a1b2c3", **fields,
            "segment_events": list(entries) or [segment_event()]}
    out: dict[str, Any] = {"id": "15761203643149024539", "data": data}
    if meta_ts is not None:
        out["meta"] = {"object": "user", "subscription_id": "f825f0", "timestamp": meta_ts}
    return out


def cloud_event(*entries: dict[str, Any], email: str = "ann@example.com",
                time: str | None = META_TS) -> dict[str, Any]:
    """The CloudEvents v1.0 envelope around the same ``data``."""
    out: dict[str, Any] = {"specversion": "1.0", "id": "6449017691630140398", "source": "work/1",
                           "type": "com.lytics.audience.user.event",
                           "datacontenttype": "application/json",
                           "data": {"email": email,
                                    "segment_events": list(entries) or [segment_event()]}}
    if time is not None:
        out["time"] = time
    return out


def batch(n: int, *, start: int = 0, event: str = "enter") -> list[dict[str, Any]]:
    """``n`` default bodies for distinct users (``user{i}@example.com``)."""
    return [body(segment_event(event), email=f"user{i}@example.com", first_name=f"U{i}")
            for i in range(start, start + n)]


def queued_messages(client: redis.Redis, prefix: str,
                    newest: int | None = None) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """(task name, job id, event dicts) of the messages in the realtime queue, oldest first
    (only the ``newest`` ones when given)."""
    if newest == 0:
        return []
    raw = client.lrange(f"{prefix}:celery:realtime", 0, -1 if newest is None else newest - 1)
    out = []
    for item in reversed(raw):  # kombu LPUSHes and BRPOPs: the oldest is at the right end
        message = json.loads(item)
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        out.append((message["headers"]["task"], args[0], args[1]))
    return out


def queued_events(client: redis.Redis, prefix: str,
                  newest: int | None = None) -> list[dict[str, Any]]:
    """Every event in the realtime queue (or its ``newest`` messages), oldest message first."""
    return [event for _task, _job, events in queued_messages(client, prefix, newest)
            for event in events]


def queue_length(client: redis.Redis, prefix: str) -> int:
    return int(client.llen(f"{prefix}:celery:realtime"))
