"""What can go wrong talking to Klaviyo, as a tree whose shape decides what happens next.

- KlaviyoError: base of everything the client raises.
    - KlaviyoRetriableError: try again later; ``retry_after`` is a hint in seconds (or None).
        - RateLimited: 429. ``retry_after`` is Klaviyo's ``Retry-After``.
        - TransientError: 5xx, timeouts, dropped connections.
    - KlaviyoFatalError: retrying the same request cannot help.
        - AuthError: 401/403. The key is wrong or lacks a scope: stop the job, tell a person.
        - InvalidRequest: 400/409/422. ``problems`` names each bad item (``source.pointer``).
        - NotFound: 404. The list or job does not exist.
    - BatchTooLarge: refused before sending; the caller split a batch wrongly.

Every exception passes all of its arguments to ``Exception.__init__`` so that it
survives Celery's serialization. Messages never carry the API key, and Klaviyo's
error text is masked for emails before it is stored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from core.redact import redact


@dataclass(frozen=True)
class Problem:
    """One entry of Klaviyo's JSON:API ``errors[]``."""

    status: int
    code: str
    title: str
    detail: str
    pointer: str | None = None
    parameter: str | None = None

    @classmethod
    def from_json(cls, raw: dict[str, Any], status: int) -> Problem:
        source = raw.get("source") or {}
        return cls(
            status=int(raw.get("status") or status),
            code=str(raw.get("code") or ""),
            title=str(raw.get("title") or ""),
            detail=redact(str(raw.get("detail") or "")),
            pointer=source.get("pointer"),
            parameter=source.get("parameter"),
        )

    def item_index(self) -> int | None:
        """The bulk item a pointer names: ``/data/attributes/profiles/data/7/...`` → 7."""
        if not self.pointer:
            return None
        match = re.search(r"/(?:profiles/data|data)/(\d+)(?:/|$)", self.pointer)
        return int(match.group(1)) if match else None


class KlaviyoError(Exception):
    """Base of every error the Klaviyo client raises."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message, status)
        self.message = message
        self.status = status

    def __str__(self) -> str:
        return self.message


class KlaviyoRetriableError(KlaviyoError):
    """The same request may succeed later."""

    def __init__(
        self, message: str, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status)
        self.args = (message, status, retry_after)
        self.retry_after = retry_after


class RateLimited(KlaviyoRetriableError):
    """429: over the burst or steady window; wait ``retry_after`` seconds."""


class TransientError(KlaviyoRetriableError):
    """5xx, a timeout or a dropped connection."""


class KlaviyoFatalError(KlaviyoError):
    """Retrying the same request cannot help."""

    def __init__(
        self, message: str, status: int | None = None, problems: tuple[Problem, ...] = ()
    ) -> None:
        super().__init__(message, status)
        self.args = (message, status, problems)
        self.problems = problems


class AuthError(KlaviyoFatalError):
    """401/403: the key is wrong, revoked or lacks a scope."""


class InvalidRequest(KlaviyoFatalError):
    """400/409/422: Klaviyo refused the body; ``problems`` say which items."""

    def bad_items(self) -> set[int]:
        """Indexes of the bulk items Klaviyo named; empty when it named none."""
        return {i for p in self.problems if (i := p.item_index()) is not None}


class NotFound(KlaviyoFatalError):
    """404: the list, profile or job does not exist."""


class BatchTooLarge(KlaviyoError):
    """A batch over the operation's cap, refused before any request is sent."""
