"""``GET /api/segment/{id}/scan``: Lytics' segment scan on the sandbox's port.

Klaviyo's paths never start with ``/api/segment/``, so both APIs share one server.
Faults reach this route only when ``only_operations`` names ``lytics_segment_scan``.
"""

from __future__ import annotations

import asyncio
import uuid

import orjson
from starlette.requests import Request
from starlette.responses import Response

from sandbox.asgi import CALL_KEY, CallRecord
from sandbox.core import Sandbox
from sandbox.faults import LYTICS_SCAN
from sandbox.lytics import ScanError

_FAULT_STATUS = {"auth": 401, "storm": 429}


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    body = {"status": status, "message": message, "request_id": str(uuid.uuid4())}
    return Response(orjson.dumps(body), status_code=status, headers=headers,
                    media_type="application/json")


async def scan(request: Request) -> Response:
    """One page of a segment's members."""
    sandbox: Sandbox = request.app.state.sandbox
    call: CallRecord = request.scope.get(CALL_KEY) or CallRecord()
    call.op, call.account = LYTICS_SCAN, "lytics"
    latency, action = sandbox.faults.decide(LYTICS_SCAN)
    if latency:
        await asyncio.sleep(latency)
    if action is not None:
        if action.kind == "drop":
            call.drop = True
            return Response(status_code=500)
        status = _FAULT_STATUS.get(action.kind, action.status)
        headers = {"Retry-After": str(action.retry_after)} if action.kind == "storm" else None
        return _error(status, f"Injected fault: {action.kind}", headers)
    params = request.query_params
    try:
        sandbox.lytics.authorize(request.headers.get("authorization"), params.get("access_token"))
        with sandbox.lock:
            page = sandbox.lytics.scan(request.path_params["segment"], params.get("limit"),
                                       params.get("start"), params.get("fields"))
    except ScanError as exc:
        return _error(exc.status, exc.message)
    call.items = len(page["data"])
    return Response(orjson.dumps(page), media_type="application/json")
