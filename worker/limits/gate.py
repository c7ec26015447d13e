"""The limiter's side of the Klaviyo client: every request is charged as it is sent.

A client made ``client.limited(Gate(limiter))`` asks :meth:`Gate.charge` before each HTTP
request (each page of a paginated read included) and tells :meth:`Gate.rate_limited` of
every 429, which pauses that operation of that account for the whole fleet. A refused
request raises :class:`Throttled` with the wait, and nothing is sent.
"""

from __future__ import annotations

from dataclasses import dataclass

from contract.operations import Operation
from worker.limits import retry
from worker.limits.ratelimit import RateLimiter


class Throttled(Exception):
    """Our own limiter said wait ``wait`` seconds; nothing was sent."""

    def __init__(self, wait: float) -> None:
        super().__init__(wait)
        self.wait = wait


LIVE_RESERVE = 0.2  # the share of every window a background caller leaves to live calls


@dataclass(frozen=True)
class Gate:
    """Charges one account's requests to the shared limiter (a ``RequestLimiter``).

    A background gate (a backfill chunk's flush, an attribute drain) passes ``reserve``: it
    leaves that share of every window, shrinking as the window runs out, to live flushes.
    """

    limiter: RateLimiter
    reserve: float = 0.0

    def charge(self, account: str, op: Operation) -> None:
        wait = self.limiter.acquire(account, op, reserve=self.reserve)
        if wait > 0:
            raise Throttled(wait)

    def rate_limited(self, account: str, op: Operation, retry_after: float | None) -> None:
        self.limiter.cooldown(account, op, retry.rate_limited(retry_after))
