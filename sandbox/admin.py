"""``/_sandbox/…``: admin endpoints outside Klaviyo's API (no auth), for tests and demos.

- ``POST/GET/DELETE /_sandbox/faults``: inject, show, clear failures (see ``faults.py``)
- ``GET/DELETE /_sandbox/stats``: calls, items, statuses and 429s per operation and account
- ``POST /_sandbox/confirm``: confirm pending double opt-ins (``list_id``, ``emails``: optional)
- ``POST /_sandbox/suppress``: suppress people (``emails``, ``reason``, ``list_id``: optional)
- ``POST /_sandbox/unsubscribe``: people unsubscribe (``emails``, ``list_id``: optional)
- ``GET /_sandbox/realism``: the profile and every behaviour knob in force
- ``GET /_sandbox/windows/{account}``: where an account's rate-limit windows start (its phase,
  for a benchmark's yardstick; clients learn it only from ``RateLimit-Reset``)
- ``POST /_sandbox/reset``: forget everything (Lytics segments reload from their directory)
- ``GET /_sandbox/lists/{id}/emails``: all member (and pending) emails of a list, no paging
- ``POST /_sandbox/lists/{id}/flows``: a flow triggered by adding people to the list (``name``,
  ``status``: optional, default ``live``), as a marketer makes one in Klaviyo's editor
- ``GET /_sandbox/subscribe-jobs[/{id}]``: subscribe job status (Klaviyo has no GET for them)
- ``POST /_sandbox/lytics/segments/{id}``: load a segment's members (JSON lines or array)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.clock import iso
from sandbox.core import Sandbox
from sandbox.faults import Faults
from sandbox.identity import short_id
from sandbox.lytics import parse_members
from sandbox.stats import Stats


def _json(document: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(document), status_code=status, media_type="application/json")


def _sandbox(request: Request) -> Sandbox:
    sandbox: Sandbox = request.app.state.sandbox
    return sandbox


async def _object(request: Request) -> dict[str, Any]:
    raw = await request.body()
    body = orjson.loads(raw) if raw.strip() else {}
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")  # noqa: TRY004 - a 400, not a bug
    return body


async def set_faults(request: Request) -> Response:
    """Replace the fault configuration."""
    sandbox = _sandbox(request)
    try:
        faults = Faults.parse(await _object(request))
    except ValueError as exc:
        return _json({"error": str(exc)}, 400)
    with sandbox.lock:
        sandbox.faults = faults
        return _json(faults.describe())


async def get_faults(request: Request) -> Response:
    """The current fault configuration."""
    return _json(_sandbox(request).faults.describe())


def _cleared(request: Request, clear: Callable[[Sandbox], None]) -> Response:
    """Apply ``clear`` to the sandbox under its lock; answer 204."""
    sandbox = _sandbox(request)
    with sandbox.lock:
        clear(sandbox)
    return Response(status_code=204)


def _no_faults(sandbox: Sandbox) -> None:
    sandbox.faults = Faults()


def _no_stats(sandbox: Sandbox) -> None:
    sandbox.stats = Stats()


async def clear_faults(request: Request) -> Response:
    """No more faults."""
    return _cleared(request, _no_faults)


async def get_stats(request: Request) -> Response:
    """Counters per operation and per account fingerprint."""
    sandbox = _sandbox(request)
    with sandbox.lock:
        return _json(sandbox.stats.snapshot())


async def clear_stats(request: Request) -> Response:
    """Zero the counters."""
    return _cleared(request, _no_stats)


async def confirm(request: Request) -> Response:
    """Confirm pending double opt-ins."""
    try:
        body = await _object(request)
    except ValueError as exc:
        return _json({"error": str(exc)}, 400)
    list_id, emails = body.get("list_id"), body.get("emails")
    if list_id is not None and _sandbox(request).find_list(str(list_id)) is None:
        return _json({"error": f"no list {list_id}"}, 404)
    return _json({"confirmed": _sandbox(request).confirm(list_id, emails)})


async def suppress(request: Request) -> Response:
    """Suppress people globally or from one list, as bounces, complaints or their own
    clicks would."""
    return await _suppress(request, None)


async def unsubscribe(request: Request) -> Response:
    """People click "unsubscribe": globally, or from one list."""
    return await _suppress(request, "UNSUBSCRIBE")


async def _suppress(request: Request, reason: str | None) -> Response:
    try:
        body = await _object(request)
        list_id = body.get("list_id")
        count = _sandbox(request).suppress(
            _emails(body), reason or str(body.get("reason", "UNSUBSCRIBE")),
            str(list_id) if list_id is not None else None)
    except ValueError as exc:
        return _json({"error": str(exc)}, 404 if str(exc).startswith("no list") else 400)
    return _json({"suppressed": count})


def _emails(body: dict[str, Any]) -> list[str]:
    emails = body.get("emails")
    if not isinstance(emails, list) or not all(isinstance(e, str) for e in emails):
        raise ValueError("emails must be a list of strings")
    return emails


async def realism(request: Request) -> Response:
    """The behaviour knobs in force."""
    return _json(_sandbox(request).realism.describe())


async def windows(request: Request) -> Response:
    """An account's window phase: where its burst, steady and daily windows start, in real
    seconds past the epoch's (drawn now if the account has made no call yet)."""
    sandbox = _sandbox(request)
    with sandbox.lock:
        phase = sandbox.limiter.phase(request.path_params["account"])
    burst, steady, daily = (sandbox.clock.real(p) for p in phase)
    return _json({"burst": burst, "steady": steady, "daily": daily})


async def reset(request: Request) -> Response:
    """Forget everything."""
    _sandbox(request).reset()
    return Response(status_code=204)


async def list_emails(request: Request) -> Response:
    """Every member email of one list."""
    found = _sandbox(request).list_emails(request.path_params["id"])
    return _json(found) if found is not None else _json({"error": "no such list"}, 404)


async def add_flow(request: Request) -> Response:
    """A marketer builds a flow that adding people to the list triggers."""
    try:
        body = await _object(request)
    except ValueError as exc:
        return _json({"error": str(exc)}, 400)
    sandbox = _sandbox(request)
    with sandbox.lock:
        found = sandbox.find_list(request.path_params["id"])
        if found is None:
            return _json({"error": "no such list"}, 404)
        lst = found[1]
        flow = {"id": short_id(), "name": str(body.get("name") or "Welcome series"),
                "status": str(body.get("status") or "live"), "created": iso()}
        lst.flows.append(flow)
    return _json(flow, 201)


async def subscribe_job(request: Request) -> Response:
    """One subscribe job's status, counts and failures."""
    sandbox = _sandbox(request)
    with sandbox.lock:
        job = sandbox.subscribe_jobs.get(request.path_params["id"])
        return _json(job.summary()) if job else _json({"error": "no such job"}, 404)


async def subscribe_jobs(request: Request) -> Response:
    """All subscribe jobs (``?account=<fingerprint>`` narrows), without failures."""
    sandbox = _sandbox(request)
    account = request.query_params.get("account")
    with sandbox.lock:
        jobs = [{k: v for k, v in job.summary().items() if k != "failures"}
                for job in sandbox.subscribe_jobs.values()
                if account is None or job.account == account]
    return _json({"data": jobs})


async def load_segment(request: Request) -> Response:
    """Replace one Lytics segment's members."""
    sandbox = _sandbox(request)
    try:
        members = parse_members(await request.body())
    except ValueError as exc:
        return _json({"error": str(exc)}, 400)
    with sandbox.lock:
        sandbox.lytics.put(request.path_params["id"], members)
    return _json({"segment": request.path_params["id"], "total": len(members)})


ROUTES = [
    Route("/_sandbox/faults", set_faults, methods=["POST"]),
    Route("/_sandbox/faults", get_faults, methods=["GET"]),
    Route("/_sandbox/faults", clear_faults, methods=["DELETE"]),
    Route("/_sandbox/stats", get_stats, methods=["GET"]),
    Route("/_sandbox/stats", clear_stats, methods=["DELETE"]),
    Route("/_sandbox/confirm", confirm, methods=["POST"]),
    Route("/_sandbox/suppress", suppress, methods=["POST"]),
    Route("/_sandbox/unsubscribe", unsubscribe, methods=["POST"]),
    Route("/_sandbox/realism", realism, methods=["GET"]),
    Route("/_sandbox/windows/{account}", windows, methods=["GET"]),
    Route("/_sandbox/reset", reset, methods=["POST"]),
    Route("/_sandbox/lists/{id}/emails", list_emails, methods=["GET"]),
    Route("/_sandbox/lists/{id}/flows", add_flow, methods=["POST"]),
    Route("/_sandbox/subscribe-jobs", subscribe_jobs, methods=["GET"]),
    Route("/_sandbox/subscribe-jobs/{id}", subscribe_job, methods=["GET"]),
    Route("/_sandbox/lytics/segments/{id}", load_segment, methods=["POST"]),
]
