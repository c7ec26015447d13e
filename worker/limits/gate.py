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
from worker.limits.failover import Fence
from worker.limits.ratelimit import RateLimiter


class Throttled(Exception):
    """Our own limiter said wait ``wait`` seconds; nothing was sent."""

    def __init__(self, wait: float) -> None:
        super().__init__(wait)
        self.wait = wait


@dataclass(frozen=True)
class Gate:
    """Charges one account's requests to the shared limiter (a ``RequestLimiter``)."""

    limiter: RateLimiter
    fence: Fence | None = None  # after a Redis failover: nothing until the window is over

    def charge(self, account: str, op: Operation) -> None:
        self._fenced()
        wait = self.limiter.acquire(account, op)
        self._fenced()  # the master changed during the call: its grant is not to be trusted
        if wait > 0:
            raise Throttled(wait)

    def _fenced(self) -> None:
        if self.fence is not None and (wait := self.fence.wait()) > 0:
            raise Throttled(wait)

    def rate_limited(self, account: str, op: Operation, retry_after: float | None) -> None:
        self.limiter.cooldown(account, op, retry.rate_limited(retry_after))
