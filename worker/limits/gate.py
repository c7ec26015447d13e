"""Every Klaviyo call passes the global limiter first, and a 429 pauses the whole fleet."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from contract.operations import Operation
from worker.klaviyo.client import KlaviyoClient
from worker.klaviyo.errors import RateLimited
from worker.limits import retry
from worker.limits.ratelimit import RateLimiter

T = TypeVar("T")


class Throttled(Exception):
    """Our own limiter said wait ``wait`` seconds; nothing was sent."""

    def __init__(self, wait: float) -> None:
        super().__init__(wait)
        self.wait = wait


@dataclass(frozen=True)
class Gate:
    """Calls one account's Klaviyo through the shared limiter."""

    client: KlaviyoClient
    limiter: RateLimiter

    def __call__(self, op: Operation, send: Callable[[], T]) -> T:
        wait = self.limiter.acquire(self.client.account, op)
        if wait > 0:
            raise Throttled(wait)
        try:
            return send()
        except RateLimited as exc:
            self.limiter.cooldown(self.client.account, op, retry.rate_limited(exc.retry_after))
            raise
