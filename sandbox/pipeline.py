"""How every Klaviyo call is served, in Klaviyo's order of checks.

network latency → faults → API key (401) → ``revision`` header (400) → rate limits
(429) → body: byte cap, JSON, item caps, OpenAPI schema (400) → the operation's handler.
Every answer except 401 and 429 carries ``RateLimit-Limit/Remaining/Reset`` (steady window).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from contract.operations import Operation
from sandbox import errors, validation
from sandbox.account import Account
from sandbox.asgi import CALL_KEY, CallRecord
from sandbox.core import Sandbox
from sandbox.faults import Action
from sandbox.identity import fingerprint
from sandbox.ratelimit import Decision

JSON_API = "application/vnd.api+json"
CHALLENGE_PAGE = (b"<!DOCTYPE html><html><head><title>Just a moment...</title></head><body>"
                  b"<h1>Checking your browser before accessing a.klaviyo.com.</h1>"
                  b"<p>Enable JavaScript and cookies to continue.</p></body></html>")
_REVISION = re.compile(r"^\d{4}-\d{2}-\d{2}(\.pre)?$")


@dataclass
class Ctx:
    """One accepted call, as handlers see it."""

    request: Request
    sandbox: Sandbox
    op: Operation
    account: Account
    body: Any
    base: str

    def query(self, name: str) -> str | None:
        """One query parameter."""
        return self.request.query_params.get(name)

    def path(self, name: str) -> str:
        """One path parameter."""
        return str(self.request.path_params[name])

    def wants(self, parameter: str, value: str) -> bool:
        """Whether a comma list parameter (``additional-fields[list]``) names ``value``."""
        return value in (self.query(parameter) or "").split(",")


@dataclass
class Reply:
    """A handler's answer."""

    status: int
    document: Any = None
    items: int = 0
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Ctx], Reply]


def respond(status: int, document: Any, headers: dict[str, str] | None = None) -> Response:
    """A JSON:API response (empty for 204 and ``None``)."""
    content = b"" if document is None else orjson.dumps(document)
    return Response(content, status_code=status, headers=headers, media_type=JSON_API)


def rate_headers(sandbox: Sandbox, decision: Decision) -> dict[str, str]:
    """``RateLimit-*`` for the steady window."""
    return {"RateLimit-Limit": str(decision.limit),
            "RateLimit-Remaining": str(decision.remaining),
            "RateLimit-Reset": sandbox.clock.header_seconds(decision.reset)}


def fault_error(sandbox: Sandbox, action: Action) -> errors.ApiError:
    """The error an injected fault answers with."""
    if action.kind == "auth":
        return errors.not_authenticated("Injected fault: the API key was revoked.")
    if action.kind == "storm":
        value = action.retry_after
        header = str(int(value)) if float(value).is_integer() else str(value)
        return errors.throttled("Injected fault: 429 storm.", header)
    return errors.server_error(action.status)


def authenticate(request: Request) -> str:
    """The account fingerprint of a ``Klaviyo-API-Key pk_…`` header, or 401."""
    scheme, _, key = (request.headers.get("authorization") or "").partition(" ")
    key = key.strip()
    if scheme.lower() != "klaviyo-api-key" or not key.startswith("pk_") or len(key) < 4:
        raise errors.not_authenticated()
    return fingerprint(key)


def check_revision(request: Request) -> None:
    """400 unless a well-formed ``revision`` header is present."""
    revision = request.headers.get("revision")
    if revision is None:
        raise errors.invalid("The 'revision' header is required.", parameter="revision")
    if not _REVISION.match(revision):
        raise errors.invalid(f"Invalid revision {revision!r}: expected YYYY-MM-DD.",
                             parameter="revision")


async def read_body(request: Request, op: Operation, sandbox: Sandbox) -> Any:
    """The parsed, capped and (optionally) schema-checked body."""
    raw = await request.body()
    if not raw:
        raise errors.invalid("A JSON:API request body is required.", pointer="/data")
    validation.check_body_size(op, len(raw))
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise errors.invalid("The request body is not valid JSON.", pointer="/") from None
    items = validation.batch_of(op, body)
    if items is not None:
        validation.check_batch(op, items, len(raw))
    if sandbox.validate:
        validation.check_request(op, body)
    return body


def endpoint(op: Operation, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A Starlette endpoint serving ``op`` with ``handler``."""
    needs_body = op.method in ("POST", "PATCH", "DELETE")

    async def serve(request: Request) -> Response:
        sandbox: Sandbox = request.app.state.sandbox
        call: CallRecord = request.scope.get(CALL_KEY) or CallRecord()
        call.op = op.name
        headers: dict[str, str] = {}
        try:
            cut = await _on_the_wire(sandbox, op, call)
            if cut is not None:
                return cut
            call.account = authenticate(request)
            check_revision(request)
            with sandbox.lock:
                decision = sandbox.limiter.take(call.account, op)
            if not decision.allowed:
                raise _throttled(sandbox, op, decision)
            headers = rate_headers(sandbox, decision)
            body = await read_body(request, op, sandbox) if needs_body else None
            base = f"{request.url.scheme}://{request.url.netloc}"
            with sandbox.lock:
                ctx = Ctx(request, sandbox, op, sandbox.account(call.account), body, base)
                reply = _run(handler, ctx)
        except errors.ApiError as exc:
            return respond(exc.status, exc.document(), {**headers, **exc.headers})
        call.items = reply.items
        return respond(reply.status, reply.document, {**headers, **reply.headers})

    serve.__name__ = op.name
    return serve


async def _on_the_wire(sandbox: Sandbox, op: Operation, call: CallRecord) -> Response | None:
    """Latency and injected faults, before the account is even known: the answer of a cut
    connection or a challenge page, None when the call goes through (an error fault raises)."""
    network = sandbox.realism.latency
    latency, action = sandbox.faults.decide(op.name)
    if not network.zero:
        latency += network.draw(sandbox.rng)
    if latency:
        await asyncio.sleep(latency)
    if action is None:
        return None
    if action.kind == "drop":
        call.drop = True
        return Response(status_code=500)
    if action.kind == "challenge":
        return Response(CHALLENGE_PAGE, status_code=403, media_type="text/html")
    raise fault_error(sandbox, action)


def _run(handler: Handler, ctx: Ctx) -> Reply:
    """The handler; a body it cannot read is a 400 when validation is off."""
    try:
        return handler(ctx)
    except (KeyError, TypeError, AttributeError) as exc:
        if ctx.sandbox.validate:
            raise
        raise errors.invalid(f"Malformed body ({type(exc).__name__}: {exc}).",
                             pointer="/data") from None


def _throttled(sandbox: Sandbox, op: Operation, decision: Decision) -> errors.ApiError:
    wait = sandbox.clock.header_seconds(decision.retry_after)
    return errors.throttled(
        f"Request was throttled: over the {decision.exceeded} limit of "
        f"{decision.exceeded_limit} calls per {_WINDOW[decision.exceeded or 'burst']} "
        f"for {op.name}. Expected available in {wait} seconds.", wait)


_WINDOW = {"burst": "second", "steady": "minute", "daily": "day"}
