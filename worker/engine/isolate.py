"""Send a bulk batch; when Klaviyo refuses it, set aside only the bad items.

Klaviyo validates a bulk body as a whole: one bad profile makes the whole call
a 400 (peers' most common complaint). We drop the items its ``source.pointer``
names and send the rest; when it names none, we bisect until the bad ones are
alone. A profile over Klaviyo's size cap, refused before sending, is found
the same way. Rate limits, transient errors and auth errors pass through.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from worker.klaviyo.errors import BatchTooLarge, InvalidRequest

T = TypeVar("T")


@dataclass
class Isolated(Generic[T]):
    """What was sent, and what Klaviyo refused with its reason."""

    sent: list[T] = field(default_factory=list)
    refused: list[tuple[T, str]] = field(default_factory=list)

    def merge(self, other: Isolated[T]) -> Isolated[T]:
        self.sent += other.sent
        self.refused += other.refused
        return self


def reason_of(exc: InvalidRequest, index: int | None = None) -> str:
    """Klaviyo's own words for one item (or the whole call)."""
    for problem in exc.problems:
        if index is None or problem.item_index() == index:
            return f"{problem.status} {problem.code}: {problem.detail or problem.title}".strip()
    return str(exc)


def send_isolating(items: Sequence[T], send: Callable[[list[T]], None]) -> Isolated[T]:
    """Send ``items`` with ``send``; return which were sent and which refused."""
    batch = list(items)
    if not batch:
        return Isolated()
    try:
        send(batch)
    except BatchTooLarge as exc:  # one oversized profile: found like a 400 without pointers
        return _bisect(batch, send, str(exc))
    except InvalidRequest as exc:
        named = sorted(i for i in exc.bad_items() if i < len(batch))
        if not named:
            return _bisect(batch, send, reason_of(exc))
        refused = [(batch[i], reason_of(exc, i)) for i in named]
        rest = [item for i, item in enumerate(batch) if i not in set(named)]
        return Isolated(refused=refused).merge(send_isolating(rest, send))
    return Isolated(sent=batch)


def _bisect(batch: list[T], send: Callable[[list[T]], None], reason: str) -> Isolated[T]:
    """Klaviyo did not say which item is bad: halve until it stands alone."""
    if len(batch) == 1:
        return Isolated(refused=[(batch[0], reason)])
    mid = len(batch) // 2
    return send_isolating(batch[:mid], send).merge(send_isolating(batch[mid:], send))
