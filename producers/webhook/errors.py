"""Why the receiver refuses a request, and the status each reason gets (one table).

- :class:`Rejected` → :class:`UnknownJob` (404), :class:`Unauthorized` (401),
  :class:`TooLarge` (413), :class:`Unavailable` (503, with ``Retry-After``);
- :class:`producers.lytics.PayloadError` (400) comes from the parser.

Lytics drops a body for good on 400, 404 and 413 and retries anything else, so a
transient problem must only ever be :class:`Unavailable`.
"""

from __future__ import annotations

from producers.lytics import PayloadError

RETRY_AFTER_DOWN = 10  # seconds: Redis unreachable
RETRY_AFTER_BUSY = 30  # seconds: the realtime queue is too deep
RETRY_AFTER_REPLICATION = 5  # seconds: no replica acknowledged the events (a failover?)


class Rejected(Exception):
    """A request the receiver refuses; the message is safe to show and to log."""

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message, retry_after)
        self.message = message
        self.retry_after = retry_after


class UnknownJob(Rejected):
    """No job in the jobs file has this id."""


class Unauthorized(Rejected):
    """The request carries no token, or not the job's token."""


class TooLarge(Rejected):
    """The body is larger than ``WEBHOOK_MAX_BODY_BYTES``."""


class Unavailable(Rejected):
    """Redis is unreachable, the realtime queue is too deep or the events are not on a
    replica yet: Lytics should retry later."""


STATUS_FOR: dict[type[Exception], int] = {
    PayloadError: 400,
    Unauthorized: 401,
    UnknownJob: 404,
    TooLarge: 413,
    Unavailable: 503,
}
