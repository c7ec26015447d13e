"""The limiter's side of the Klaviyo client: every request is charged as it is sent.

A client made ``client.limited(Gate(limiter))`` asks :meth:`Gate.charge` before each HTTP
request (each page of a paginated read included), hands every answer's ``RateLimit-*``
headers back to :meth:`Gate.observe` (the limiter learns the account's window phase, limit
and the share other integrations use), and tells :meth:`Gate.rate_limited` of every 429,
which pauses that operation of that account for the whole fleet. A refused request raises
:class:`Throttled` with the wait, and nothing is sent.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from redis import RedisError

from contract.operations import Operation
from worker.limits import retry
from worker.limits.failover import Fence
from worker.limits.ratelimit import Grant, RateHeaders, RateLimiter

log = logging.getLogger(__name__)


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
    fence: Fence | None = None  # after a Redis failover: nothing until the window is over
    reserve: float = 0.0

    def charge(self, account: str, op: Operation) -> Grant:
        self._fenced()
        grant = self.limiter.request(account, op, reserve=self.reserve)
        self._fenced()  # the master changed during the call: its grant is not to be trusted
        if not grant.granted:
            raise Throttled(grant.wait)
        return grant

    def observe(self, account: str, op: Operation, ticket: object,
                headers: Mapping[str, str]) -> None:
        """Learn from an answer's ``RateLimit-*`` headers; an answer without them, or a Redis
        that fails now, only costs the lesson (the call itself has succeeded)."""
        found = RateHeaders.parse(headers)
        if found is None or not isinstance(ticket, Grant):
            return
        try:
            self.limiter.observe(account, op, ticket, found)
        except RedisError as exc:
            log.warning("rate limit headers of %s not learnt: %s", op.name, type(exc).__name__)

    def _fenced(self) -> None:
        if self.fence is not None and (wait := self.fence.wait()) > 0:
            raise Throttled(wait)

    def rate_limited(self, account: str, op: Operation, retry_after: float | None) -> None:
        self.limiter.cooldown(account, op, retry.rate_limited(retry_after))
