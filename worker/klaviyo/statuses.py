"""The one table from an HTTP status to what the caller must do, and the error it raises.

Exact statuses win over their class (``4xx``); a class the table does not list is treated
like ``5xx``. Retriable rows carry ``Retry-After`` in seconds; fatal rows carry Klaviyo's
JSON:API ``errors[]`` as :class:`~worker.klaviyo.errors.Problem` values (with their
``source.pointer``). Messages name the operation and are redacted: no key, no email.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from contract.operations import Operation
from core.redact import redact
from worker.klaviyo.errors import (
    AuthError,
    InvalidRequest,
    KlaviyoError,
    NotFound,
    Problem,
    RateLimited,
    TransientError,
)

_SECONDS = re.compile(r"\s*(\d+(?:\.\d+)?)\s*")


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds from ``now``: delta-seconds or an HTTP-date; else None."""
    if value is None:
        return None
    if match := _SECONDS.fullmatch(value):
        return float(match.group(1))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def problems(document: dict[str, Any] | None, status: int) -> tuple[Problem, ...]:
    errors = document.get("errors") if isinstance(document, dict) else None
    if not isinstance(errors, list):
        return ()
    return tuple(Problem.from_json(e, status) for e in errors if isinstance(e, dict))


def _message(op: Operation, status: int, problems: tuple[Problem, ...]) -> str:
    head = f"{op.name} ({op.method} {op.path}) answered HTTP {status}"
    first = problems[0] if problems else None
    said = f": {first.title}: {first.detail}" if first else ""
    more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
    return redact(f"{head}{said}{more}")


# A factory turns (message, status, headers, problems) into the exception to raise.
_Factory = Callable[[str, int, Mapping[str, str], tuple[Problem, ...]], KlaviyoError]


def _retriable(kind: type[RateLimited | TransientError]) -> _Factory:
    return lambda msg, status, headers, _: kind(
        msg, status, retry_after=parse_retry_after(headers.get("Retry-After"))
    )


def _fatal(kind: type[AuthError | InvalidRequest | NotFound]) -> _Factory:
    return lambda msg, status, _, problems: kind(msg, status, problems=problems)


# THE table from status (or status class) to action. Exact statuses win over classes;
# a class not listed (1xx, 6xx+) is treated like 5xx.
ACTIONS: dict[int | str, _Factory | None] = {
    "2xx": None,  # success: return the response
    "3xx": _retriable(TransientError),  # redirects are not followed: a proxy or a wrong base URL
    400: _fatal(InvalidRequest),  # bad body: problems name the items
    401: _fatal(AuthError),  # wrong or revoked key: stop the job, tell a person
    403: _fatal(AuthError),  # key lacks a scope: same
    404: _fatal(NotFound),  # list or job does not exist
    408: _retriable(TransientError),  # request timeout: send it again later
    409: _fatal(InvalidRequest),  # conflict (duplicate list name, ...)
    422: _fatal(InvalidRequest),  # well-formed but refused
    429: _retriable(RateLimited),  # over burst or steady window: honour Retry-After
    "4xx": _fatal(InvalidRequest),  # any other 4xx: the request itself is wrong
    "5xx": _retriable(TransientError),  # Klaviyo is down or overloaded: try later
}


def action_for(status: int) -> _Factory | None:
    """The table row for ``status``: its exact entry, else its class's, else the 5xx row."""
    if status in ACTIONS:
        return ACTIONS[status]
    return ACTIONS.get(f"{status // 100}xx", ACTIONS["5xx"])


def refusal(
    op: Operation, status: int, document: dict[str, Any] | None, headers: Mapping[str, str]
) -> KlaviyoError | None:
    """The exception for a non-2xx answer to ``op``, or None when it succeeded."""
    factory = action_for(status)
    if factory is None:
        return None
    found = problems(document, status)
    return factory(_message(op, status, found), status, headers, found)
