"""Fuzz specs: malformed bodies are refused cleanly (400, nothing queued), never with a 5xx."""

from __future__ import annotations

import json
from typing import Any

import orjson
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lytics_samples import (
    TOKEN,
    batch,
    body,
    cloud_event,
    queue_length,
    queued_events,
    segment_event,
)
from starlette.testclient import TestClient

from core.jobs import ExportJob
from producers.lytics import ParsedBody, PayloadError, parse_body

URL = "/webhooks/lytics/vip"
AUTH = {"X-Api-Key": TOKEN}
CHECKS = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]

scalars = (st.none() | st.booleans() | st.integers()
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30)
           | st.sampled_from(["enter", "exit", "change", "vip_buyers", "1.0",
                              "2023-05-25T23:09:59.872199615Z"]))
keys = st.text(max_size=12) | st.sampled_from(
    ["data", "meta", "segment_events", "event", "id", "slug", "enter", "exit", "time",
     "timestamp", "specversion", "email"])
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=25)
valid_bodies = st.sampled_from([
    body(), cloud_event(), batch(3), [body(), cloud_event(segment_event("exit"))],
    body(segment_event("enter"), segment_event("exit", slug="churn_risk", segment_id="x"),
         segment_event("change", ts=None)),
])


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a node of a JSON value (the root is ``()``)."""
    found = [path]
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(
        value, list) else []
    for key, child in items:
        found.extend(_paths(child, (*path, key)))
    return found


@st.composite
def mutated_bodies(draw: st.DrawFn) -> Any:
    """A valid body with one node replaced by random JSON, or deleted."""
    value = orjson.loads(orjson.dumps(draw(valid_bodies)))
    path = draw(st.sampled_from(_paths(value)[1:]))
    parent = value
    for key in path[:-1]:
        parent = parent[key]
    if draw(st.booleans()):
        parent[path[-1]] = draw(json_values)
    elif isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent.pop(path[-1])
    return value


def _unstamped(wire: dict[str, Any]) -> dict[str, Any]:
    """A wire event without its receive time (the parse here runs later than the receiver's)."""
    return {k: v for k, v in wire.items() if k != "received_ns"}


def _check_parse(value: Any, job: ExportJob) -> ParsedBody | None:
    """parse_body either succeeds or raises PayloadError with a located message."""
    try:
        return parse_body(value, job)
    except PayloadError as exc:
        assert exc.message.startswith("body")
        return None


@settings(max_examples=500, deadline=None, database=None, suppress_health_check=CHECKS)
@given(value=json_values | mutated_bodies())
def test_parse_body_raises_only_payload_errors(job: ExportJob, value: Any) -> None:
    """Whatever JSON arrives, the parser answers with events or a PayloadError, nothing else."""
    _check_parse(value, job)


@settings(max_examples=1500, deadline=None, database=None, suppress_health_check=CHECKS)
@given(value=json_values | mutated_bodies())
def test_receiver_never_5xx_and_queues_nothing_for_a_refusal(
    client: TestClient, redis_client: redis.Redis, prefix: str, job: ExportJob, value: Any
) -> None:
    """A malformed body is a 400 that queues nothing; an acceptable one a 202 that queues it all."""
    # given
    before, raw = queue_length(redis_client, prefix), json.dumps(value).encode()
    # when
    answer = client.post(URL, content=raw, headers=AUTH)
    # then
    assert answer.status_code in (202, 400), answer.text
    added = queue_length(redis_client, prefix) - before
    expected = _check_parse(orjson.loads(raw), job)
    if answer.status_code == 400:
        assert expected is None
        assert added == 0
    else:
        assert expected is not None
        assert answer.json() == {"accepted": len(expected.events), "ignored": expected.ignored}
        wires = [event.to_wire() for event in expected.events]
        queued = queued_events(redis_client, prefix, added)
        assert all("received_ns" in q for q in queued)  # the receiver's clock, set on receipt
        assert sorted(map(_unstamped, queued), key=repr) == sorted(map(_unstamped, wires), key=repr)


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=CHECKS)
@given(raw=st.binary(max_size=200) | st.builds(lambda b, n: orjson.dumps(b)[:n], valid_bodies,
                                               st.integers(0, 400)))
def test_broken_bytes_are_400(client: TestClient, redis_client: redis.Redis, prefix: str,
                              raw: bytes) -> None:
    """Random or truncated bytes are never accepted unless they happen to be a whole body."""
    before = queue_length(redis_client, prefix)
    answer = client.post(URL, content=raw, headers=AUTH)
    assert answer.status_code in (202, 400)
    if answer.status_code == 400:
        assert queue_length(redis_client, prefix) == before
