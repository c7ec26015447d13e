"""The receiver's OpenAPI 3.1 document, written by hand, and a minimal docs page.

Fuzzers (hypothesis, schemathesis) read ``/openapi.json``; keep it in step with
``producers.lytics`` (shapes) and ``producers.webhook.errors`` (statuses).
"""

from __future__ import annotations

from typing import Any

from producers.lytics import MAX_BODIES

_TIMESTAMP = {"type": "string", "format": "date-time",
              "description": "RFC 3339; up to nanoseconds; `Z` or an offset such as `-07:00`.",
              "examples": ["2023-05-25T23:09:59.872199615Z"]}

_SEGMENT_EVENT = {
    "type": "object",
    "description": "One audience event. Its time is the key named after the event, else "
                   "`meta.timestamp`, else the CloudEvents `time`; with none of them the body is "
                   "refused (400).",
    "required": ["event"],
    "anyOf": [{"required": ["id"]}, {"required": ["slug"]}],
    "properties": {
        "event": {"enum": ["enter", "exit", "change"]},
        "id": {"type": "string", "minLength": 1, "description": "Segment id (matched first)."},
        "slug": {"type": "string", "minLength": 1, "description": "Segment slug (matched second)."},
        "enter": _TIMESTAMP,
        "exit": _TIMESTAMP,
    },
}

_DATA = {
    "type": "object",
    "description": "Profile fields as Lytics stores them, plus `segment_events`.",
    "required": ["segment_events"],
    "properties": {"segment_events": {"type": "array",
                                      "items": {"$ref": "#/components/schemas/SegmentEvent"}}},
    "additionalProperties": True,
}

_SCHEMAS: dict[str, Any] = {
    "SegmentEvent": _SEGMENT_EVENT,
    "Data": _DATA,
    "LyticsBody": {
        "type": "object", "required": ["data"], "not": {"required": ["specversion"]},
        "properties": {"id": {"type": "string"}, "data": {"$ref": "#/components/schemas/Data"},
                       "meta": {"type": "object", "properties": {"timestamp": _TIMESTAMP}}},
    },
    "CloudEvent": {
        "type": "object", "required": ["specversion", "data"],
        "properties": {"specversion": {"type": "string"}, "type": {"type": "string"},
                       "id": {"type": "string"}, "source": {"type": "string"}, "time": _TIMESTAMP,
                       "data": {"$ref": "#/components/schemas/Data"}},
    },
    "OneBody": {"oneOf": [{"$ref": "#/components/schemas/LyticsBody"},
                          {"$ref": "#/components/schemas/CloudEvent"}]},
    "Payload": {"oneOf": [{"$ref": "#/components/schemas/OneBody"},
                          {"type": "array", "maxItems": MAX_BODIES,
                           "items": {"$ref": "#/components/schemas/OneBody"}}]},
    "Accepted": {"type": "object", "required": ["accepted", "ignored"],
                 "properties": {"accepted": {"type": "integer", "minimum": 0},
                                "ignored": {"type": "integer", "minimum": 0}}},
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
}


def _error(description: str, retry: bool = False) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description, "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    if retry:
        answer["headers"] = {"Retry-After": {"schema": {"type": "integer"},
                                             "description": "Seconds to wait before retrying."}}
    return answer


_RECEIVE = {
    "summary": "Receive Lytics audience-trigger events for one export job",
    "description": "Authenticates, parses the whole body (all or nothing), enqueues one Celery "
                   "message per action, then answers 202. Klaviyo is never called here.",
    "parameters": [{"name": "job_id", "in": "path", "required": True,
                    "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,62}$"}}],
    "requestBody": {"required": True, "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/Payload"}}}},
    "responses": {
        "202": {"description": "Every selected event is enqueued; unselected ones are ignored.",
                "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Accepted"}}}},
        "400": _error("Not JSON or not a Lytics payload (message says where); nothing queued."),
        "401": _error("Missing or wrong token (also for a job id that does not exist)."),
        "404": _error("No such job (only told to a caller with a valid token)."),
        "413": _error("Body larger than WEBHOOK_MAX_BODY_BYTES."),
        "503": _error("Redis unreachable or queue too deep; retry after Retry-After.", retry=True),
    },
}

_PROBE = {"responses": {"200": {"description": "OK"}, "503": _error("Not ready.")}}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "klaviyo-audience-export webhook receiver", "version": "1",
             "description": "Receives Lytics audience triggers and queues them for export."},
    "paths": {
        "/webhooks/lytics/{job_id}": {method: {**_RECEIVE, "operationId": f"receive_{method}"}
                                      for method in ("post", "put", "patch")},
        "/healthz": {"get": {"summary": "The process is alive", **_PROBE}},
        "/readyz": {"get": {"summary": "Redis answers and the jobs are loaded", **_PROBE}},
    },
    "security": [{"bearer": []}, {"authorization": []}, {"apiKey": []}, {"queryToken": []}],
    "components": {
        "schemas": _SCHEMAS,
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "authorization": {"type": "apiKey", "in": "header", "name": "Authorization",
                              "description": "The raw token, without `Bearer `."},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
            "queryToken": {"type": "apiKey", "in": "query", "name": "token"},
        },
    },
}

DOCS_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Webhook receiver</title></head>
<body><h1>klaviyo-audience-export webhook receiver</h1>
<p><code>POST /webhooks/lytics/{job_id}</code> takes Lytics audience-trigger bodies (single,
batched array of up to 1,000, or CloudEvents). Send the job's token as
<code>Authorization</code>, <code>X-Api-Key</code> or <code>?token=</code>.</p>
<p>The full description is the <a href="/openapi.json">OpenAPI document</a>.</p>
</body></html>
"""
