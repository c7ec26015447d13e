"""Klaviyo's JSON:API error documents, and the exception handlers raise to send one."""

from __future__ import annotations

import uuid
from typing import Any


def problem(status: int, code: str, title: str, detail: str, *, pointer: str | None = None,
            parameter: str | None = None) -> dict[str, Any]:
    """One entry of ``errors[]`` in Klaviyo's shape."""
    entry: dict[str, Any] = {"id": str(uuid.uuid4()), "status": status, "code": code,
                             "title": title, "detail": detail}
    if pointer is not None:
        entry["source"] = {"pointer": pointer}
    elif parameter is not None:
        entry["source"] = {"parameter": parameter}
    return entry


class ApiError(Exception):
    """Raised by any layer to answer with ``{"errors": [...]}``."""

    def __init__(self, status: int, problems: list[dict[str, Any]],
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(status, problems, headers)
        self.status = status
        self.problems = problems
        self.headers = headers or {}

    def document(self) -> dict[str, Any]:
        """The response body."""
        return {"errors": self.problems}


def invalid(detail: str, *, pointer: str | None = None, parameter: str | None = None) -> ApiError:
    """400: the request breaks the contract; the source says where."""
    return ApiError(400, [problem(400, "invalid", "Invalid input.", detail,
                                  pointer=pointer, parameter=parameter)])


def not_found(detail: str, *, pointer: str | None = None) -> ApiError:
    """404: the list, profile or job does not exist in this account."""
    return ApiError(404, [problem(404, "not_found", "Not found.", detail, pointer=pointer)])


def conflict(detail: str, *, pointer: str | None = None) -> ApiError:
    """409: an identifier already belongs to another profile."""
    return ApiError(409, [problem(409, "duplicate_profile", "Conflict.", detail, pointer=pointer)])


def not_authenticated(detail: str = "Missing or invalid private key.") -> ApiError:
    """401 in Klaviyo's words."""
    return ApiError(401, [problem(401, "not_authenticated",
                                  "Authentication credentials were not provided.", detail,
                                  pointer="/data/")])


def throttled(detail: str, retry_after: str) -> ApiError:
    """429 with ``Retry-After``."""
    return ApiError(429, [problem(429, "throttled", "Request was throttled.", detail,
                                  pointer="/data/")], {"Retry-After": retry_after})


def server_error(status: int) -> ApiError:
    """An injected 5xx."""
    return ApiError(status, [problem(status, "error", "A server error occurred.",
                                     f"Injected fault: HTTP {status}.")])
