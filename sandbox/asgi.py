"""The outermost ASGI layer: per-call records for stats, and dropped connections.

Every HTTP call gets a :class:`CallRecord` in its scope. Handlers fill in the
operation, account and item count; this layer adds the status and records it.
A handler that sets ``drop`` gets no response at all: the connection is aborted
through uvicorn's transport (reached via its ``send`` callable), which a client
sees as a reset connection (requests: ``ConnectionError``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from sandbox.core import Sandbox

CALL_KEY = "sandbox.call"


@dataclass
class CallRecord:
    """What one call was, for stats."""

    op: str | None = None
    account: str = "anonymous"
    items: int = 0
    status: int = 0
    drop: bool = False


class CallLayer:
    """Wraps the Starlette app; must be the app uvicorn runs (no wrapper in between)."""

    def __init__(self, app: ASGIApp, sandbox: Sandbox) -> None:
        self.app = app
        self.sandbox = sandbox

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        call = CallRecord()
        scope[CALL_KEY] = call

        async def guarded(message: Message) -> None:
            if call.drop:
                return
            if message["type"] == "http.response.start":
                call.status = message["status"]
            await send(message)

        await self.app(scope, receive, guarded)
        if call.drop:
            await abort(send)
        if call.op is not None:
            with self.sandbox.lock:
                self.sandbox.stats.record(call.op, call.account, call.status, call.items)


async def abort(send: Send) -> None:
    """Reset the connection without a byte of response."""
    transport: Any = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:
        raise RuntimeError("cannot drop the connection: run the sandbox under uvicorn")
    transport.abort()
    await asyncio.sleep(0)  # let uvicorn see the connection lost before it would answer 500
    await asyncio.sleep(0)
