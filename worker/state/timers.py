"""One deferred flush at a time per job and queue, however many flushes ask for one.

A flush that finds its users not yet due (a removal waiting for its profile, a settle time,
a lease), or is throttled by the limiter or answered 429 or 5xx, lines up a flush for later.
Several flushes run side by side (``FLUSH_PARALLELISM``) and each widens the work when much
is due, so without a check each of them lines up its own, and each of those again: under a
long throttle the flush tasks multiplied (thousands a minute in the fault suite), each costing
a limiter round trip and a place in the queue while the real work waited behind them.

So a deferred flush is sent only when none is lined up for that moment or earlier:
``{job}:flush-due:{queue}`` holds the due time of the one that is, and that flush, when it
runs, takes its mark away (:func:`ran`; it compares the value, so a mark set since for an
earlier flush stays), which lets the next one be lined up. Flushes asked for *now* are not
counted here: the flush slots bound them. A lined-up task that is lost (a crash) leaves its
mark until it expires, ``GRACE_MS`` after its due time; beat's sweep flushes meanwhile.
"""

from __future__ import annotations

from pathlib import Path

import redis

from core.keys import JobKeys

_LINE_UP = (Path(__file__).parent / "lua" / "line_up.lua").read_text(encoding="utf-8")
_RAN = ("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end "
        "return 0")
GRACE_MS = 60_000


def line_up(client: redis.Redis, keys: JobKeys, queue: str, due_ms: int, countdown_ms: int) -> bool:
    """True when the caller should send the flush due at ``due_ms``: none is lined up by then."""
    script = client.register_script(_LINE_UP)
    ttl = max(1, countdown_ms) + GRACE_MS
    return bool(script(keys=[keys.flush_due(queue)], args=[due_ms, ttl]))


def ran(client: redis.Redis, keys: JobKeys, queue: str, due_ms: int) -> None:
    """The flush lined up for ``due_ms`` runs: another may be lined up from now on."""
    client.register_script(_RAN)(keys=[keys.flush_due(queue)], args=[due_ms])
