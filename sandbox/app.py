"""The ASGI application: every operation of the table under ``/api/``, Lytics' scan,
and the ``/_sandbox/`` admin routes, wrapped in the call-recording layer."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox import admin, errors, routes_jobs, routes_lists, routes_lytics, routes_profiles
from sandbox.asgi import CallLayer
from sandbox.core import Sandbox
from sandbox.extra_operations import SERVED
from sandbox.pipeline import Handler, endpoint, respond

HANDLERS: dict[str, Handler] = {**routes_lists.HANDLERS, **routes_profiles.HANDLERS,
                                **routes_jobs.HANDLERS}


def routes() -> list[Route]:
    """One route per operation in the table (all must have a handler), then the rest."""
    missing = [op.name for op in SERVED if op.name not in HANDLERS]
    if missing:
        raise RuntimeError(f"sandbox serves no handler for {missing}")
    served = [Route(op.path, endpoint(op, HANDLERS[op.name]), methods=[op.method])
              for op in SERVED]
    scan = Route("/api/segment/{segment}/scan", routes_lytics.scan, methods=["GET"])
    return [*served, scan, *admin.ROUTES]


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    code, title = ("not_found", "Not found.") if status == 404 else ("method_not_allowed",
                                                                      "Method not allowed.")
    detail = f"{request.method} {request.url.path} is not served here."
    return respond(status, {"errors": [errors.problem(status, code, title, detail)]})


def build_app(sandbox: Sandbox) -> CallLayer:
    """The app uvicorn serves."""
    app = Starlette(routes=routes(), exception_handlers={404: _http_error, 405: _http_error})
    app.state.sandbox = sandbox
    return CallLayer(app, sandbox)
