"""When to try again, in one place: records, flushes, import polls, removals and chunks.

The limiter (``ratelimit``) says when a call may be sent; this module says how long to wait
after something did not work. Every wait is capped; those a fleet shares are jittered.
"""

from __future__ import annotations

import random

from core.backoff import backoff_seconds

RECORD_RETRY_BASE_SECONDS = 1.0  # a record task that failed: 1, 2, 4 ... s (full jitter)
FLUSH_FAILURE_BASE_SECONDS = 0.5  # flushes failing in a row (5xx, timeouts): 0.5, 1, 2 ... s
FLUSH_FAILURE_CAP_SECONDS = 60.0
FLUSH_FAILURES_TTL_SECONDS = 3600  # a run of failures is forgotten after an hour
NO_RETRY_AFTER_SECONDS = 1.0  # a 429 without Retry-After, or a 5xx inside a flush
FOLLOW_UP_JITTER_SECONDS = 0.05  # spreads the flushes a fleet lines up for the same moment
MAX_POLL_BACKOFF_SECONDS = 300.0  # well under the visibility timeout's floor of countdowns
BOOTSTRAP_BUSY_SECONDS = 1.0  # another worker is finding or creating the job's list
RECHECK_MIN_SECONDS = 1.0  # first look again for a profile that is not there yet
RECHECK_MAX_SECONDS = 30.0  # the longest gap between two looks
CHUNK_RETRY_BASE_SECONDS = 1.0  # a backfill chunk that met a passing Redis error
CHUNK_RETRY_CAP_SECONDS = 60.0


def record_retry(attempt: int, visibility_timeout: float) -> float:
    """Countdown before a failed record task runs again (a third of the visibility timeout
    at most, so the broker never redelivers the message while the retry waits)."""
    return backoff_seconds(attempt, base=RECORD_RETRY_BASE_SECONDS, cap=visibility_timeout / 3)


def after_flush_failures(failures: int) -> float:
    """Countdown of the next flush after ``failures`` passing failures in a row."""
    return backoff_seconds(failures, base=FLUSH_FAILURE_BASE_SECONDS,
                           cap=FLUSH_FAILURE_CAP_SECONDS)


_RNG = random.Random()  # our own: jitter never moves the global ``random`` state

def jittered(seconds: float) -> float:
    """``seconds`` plus a little jitter: flushes lined up by many workers do not coincide."""
    return seconds + _RNG.uniform(0, FOLLOW_UP_JITTER_SECONDS)


def rate_limited(retry_after: float | None) -> float:
    """How long a 429 pauses an operation: Klaviyo's ``Retry-After``, else a second."""
    return retry_after or NO_RETRY_AFTER_SECONDS


def poll_again(attempt: int, retry_after: float | None, poll_interval: float) -> float:
    """When to poll an import that Klaviyo could not answer (a 429 or a 5xx) ``attempt`` times:
    its ``Retry-After``, else a growing multiple of the poll interval, capped."""
    return retry_after or backoff_seconds(
        attempt, base=poll_interval, cap=MAX_POLL_BACKOFF_SECONDS, jitter=False
    )


def recheck_ms(waited_ms: int, bound_ms: int) -> int:
    """The gap before looking again for a profile: half the time waited so far, kept between
    ``RECHECK_MIN_SECONDS`` and ``RECHECK_MAX_SECONDS``, and never past the bound."""
    gap = min(RECHECK_MAX_SECONDS * 1000, max(RECHECK_MIN_SECONDS * 1000, waited_ms / 2))
    return max(1, int(min(gap, bound_ms - waited_ms)))


def chunk_retry(attempt: int) -> float:
    """Countdown before a backfill chunk that met a passing Redis error runs again."""
    return backoff_seconds(attempt, base=CHUNK_RETRY_BASE_SECONDS, cap=CHUNK_RETRY_CAP_SECONDS)
