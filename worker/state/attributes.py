"""Members whose mapped fields Klaviyo still has to hear, gathered into large bulk imports.

A subscribe carries no attributes, and bulk imports (which do) are limited to 150 a minute:
one import per 1,000-user subscribe chunk would cap a field-mapped export near 150,000
members a minute. So a flush only *queues* the members whose fields changed
(``attrs-pending``, score: when first queued, ms) and a separate drain sends them in imports of
up to 10,000 profiles, with the newest fields read when it claims them.

Nothing is lost on a crash: a member is queued before the flush records it as applied, a
drain claims members under a lease (``attrs-inflight``) that returns them to the queue when
it expires, and they leave the lease only once Klaviyo has accepted their import (or refused
them, which dead-letters them). Counters are untouched: attributes change no membership.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis

from core.keys import JobKeys
from worker.state.desired import Desired, _described_fields, _script

_CLAIM = _script("split", "attrs_claim")


class AttributeQueue:
    """One job's queue of members whose fields wait for an attribute bulk import."""

    def __init__(self, client: redis.Redis, keys: JobKeys) -> None:
        self.redis = client
        self.keys = keys
        self._claim = client.register_script(_CLAIM)

    def add(self, emails: Sequence[str], now_ms: int) -> None:
        """Queue members (a member already queued keeps its place)."""
        if emails:
            self.redis.zadd(self.keys.attrs_pending, dict.fromkeys(emails, now_ms), nx=True)

    def claim(self, now_ms: int, lease_ms: int, max_n: int) -> list[Desired]:
        """Up to ``max_n`` queued members with their newest fields, under a lease."""
        answer = self._claim(args=[self.keys.base, now_ms, now_ms + lease_ms, max_n])
        return _described_fields(answer)

    def done(self, emails: Sequence[str]) -> None:
        """Klaviyo accepted (or refused) these members' import: their lease ends."""
        if emails:
            self.redis.zrem(self.keys.attrs_inflight, *emails)

    def put_back(self, emails: Sequence[str], now_ms: int) -> None:
        """The import was not sent (throttled, 429, 5xx): queue them again."""
        if emails:
            pipe = self.redis.pipeline(transaction=True)
            pipe.zrem(self.keys.attrs_inflight, *emails)
            pipe.zadd(self.keys.attrs_pending, dict.fromkeys(emails, now_ms), lt=True)
            pipe.execute()

    def oldest_ms(self) -> int | None:
        """When the longest-waiting queued member was queued (ms), None when none is."""
        first = self.redis.zrange(self.keys.attrs_pending, 0, 0, withscores=True)
        return int(first[0][1]) if first else None

    def queued(self) -> int:
        return int(self.redis.zcard(self.keys.attrs_pending))

    def held(self) -> int:
        return int(self.redis.zcard(self.keys.attrs_inflight))
