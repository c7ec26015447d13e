"""Opt-outs respected: nobody who unsubscribed or is suppressed is subscribed again.

Klaviyo's subscribe endpoint *lifts* ``UNSUBSCRIBE``, ``SPAM_COMPLAINT`` and
``USER_SUPPRESSED`` suppressions, so a subscribe job that meets someone who opted out last
month would opt them back in. Before each subscribe chunk the flush asks :func:`screen`,
which looks the chunk up in the account's opt-out mirror (``worker.state.optouts``, one
``HMGET``: no Klaviyo call on the way) and takes out everyone unsubscribed or suppressed,
globally or from the job's list. They are counted once each as ``omitted:unsubscribed`` or
``omitted:suppressed`` and released (not retried); a later enter or change looks again, so
they stay out for as long as Klaviyo holds them opted out.

The mirror is filled once per account, then kept current (:func:`refresh`):

- **Fill.** Every profile with a global suppression, then every profile with a list
  suppression (``GET /api/profiles`` filtered on the suppression timestamps, 100 a page,
  with their consent), written into a new generation; the page cursors are saved, so a
  fill cut short (our limiter, a 429, a 5xx, its time budget) goes on where it stopped.
  The generation is put in force only when complete, after reading again what was
  suppressed since the fill began.
- **Before the first subscribe.** A job's subscribes wait until its account's mirror was
  filled: a flush that finds none fills it itself (at most ``INLINE_BUDGET_SECONDS`` per
  flush) and, if it is not complete, puts its users back and tries again shortly
  (:class:`OptOutsNotReady`, a kind of :class:`~worker.limits.gate.Throttled`).
- **Incremental.** Beat's ``optouts.refresh`` (every ``OPTOUTS_REFRESH_SECONDS``) reads the
  profiles suppressed since the last refresh began (less ``REFRESH_OVERLAP``, for clock skew
  and suppressions that reach the filter late): usually one request per kind. A flush that
  finds the mirror older than ``STALE_FACTOR`` periods (beat stopped) refreshes it first.
- **Rebuild.** After ``OPTOUTS_REBUILD_SECONDS`` (a day) the whole mirror is read again into
  the next generation, which drops the suppressions lifted since (a person who subscribed
  again through a form); until then such a person stays skipped, the safe side.

Jobs with ``resubscribe = true`` subscribe everyone, and ``force_add`` jobs change no
consent: neither is screened (``ExportJob.respects_opt_outs``).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from core.jobs import ExportJob
from core.settings import load_settings
from worker.klaviyo import suppressions
from worker.klaviyo.client import KlaviyoClient
from worker.klaviyo.errors import AuthError, KlaviyoFatalError, KlaviyoRetriableError
from worker.limits.gate import Throttled
from worker.state import locks
from worker.state.counters import JobCounters
from worker.state.desired import Desired, DesiredState
from worker.state.optouts import DONE, MirrorState, OptOutMirror, digest

log = logging.getLogger(__name__)

# a fill reads again what was suppressed since it began, from our clock less OVERLAP
OVERLAP = timedelta(minutes=10)
# an incremental refresh begun at our time r has read every suppression visible by then; the
# next one reads from r less REFRESH_OVERLAP: the clock skew between us and Klaviyo plus how
# late a suppression may become visible to the filter
REFRESH_OVERLAP = timedelta(minutes=2)
INLINE_BUDGET_SECONDS = 5.0  # how long a flush may spend filling before trying again later
BEAT_BUDGET_SECONDS = 20.0  # how long one beat run may spend filling
NOT_READY_WAIT_SECONDS = 1.0  # a flush waiting for a fill looks again after this
FAILED_WAIT_SECONDS = 5.0  # after a 5xx or a dropped connection while filling
REFUSED_WAIT_SECONDS = 60.0  # after a 4xx (other than a refused key) while reading
STALE_FACTOR = 4  # refresh periods after which a flush refreshes the mirror itself


class OptOutsNotReady(Throttled):
    """The account's opt-out mirror is not filled yet: subscribe nobody, try again later."""


@dataclass(frozen=True)
class Refreshed:
    """What a refresh achieved."""

    filled: bool  # a complete mirror is in force
    more: bool = False  # a fill is still being built: run again after ``wait``
    wait: float = 0.0
    busy: bool = False  # another worker is refreshing this account


def refresh(mirror: OptOutMirror, client: KlaviyoClient, *, budget_seconds: float,
            rebuild_seconds: float | None = None) -> Refreshed:
    """Fill, go on filling, or refresh ``mirror`` from Klaviyo, under the account's lock."""
    rebuild = load_settings().optouts_rebuild_seconds if rebuild_seconds is None \
        else rebuild_seconds
    with locks.held(mirror.redis, mirror.lock_key) as mine:
        if not mine:
            return Refreshed(filled=mirror.state().filled, busy=True)
        return _refresh(mirror, client, budget_seconds, rebuild)


def _refresh(mirror: OptOutMirror, client: KlaviyoClient, budget_seconds: float,
             rebuild: float) -> Refreshed:
    """One refresh, its problems turned into when to look again."""
    try:
        return _Refresh(mirror, client, budget_seconds).run(rebuild)
    except Throttled as exc:
        return Refreshed(filled=mirror.state().filled, more=True, wait=exc.wait)
    except AuthError:
        raise  # the job's key is refused: the flush stops the job (auth_failed)
    except KlaviyoFatalError:  # Klaviyo refuses the read itself: nobody is subscribed
        log.exception("opt-out mirror of account %s: Klaviyo refused the read; subscribes "
                      "wait, again in %.0fs", mirror.account, REFUSED_WAIT_SECONDS)
        return Refreshed(filled=mirror.state().filled, more=True, wait=REFUSED_WAIT_SECONDS)
    except KlaviyoRetriableError as exc:
        log.warning("opt-out mirror of account %s: Klaviyo failed (%s), again in %.0fs",
                    mirror.account, exc, exc.retry_after or FAILED_WAIT_SECONDS)
        return Refreshed(filled=mirror.state().filled, more=True,
                         wait=exc.retry_after or FAILED_WAIT_SECONDS)


class _Refresh:
    def __init__(self, mirror: OptOutMirror, client: KlaviyoClient,
                 budget_seconds: float) -> None:
        self.mirror = mirror
        self.client = client
        self.deadline = time.monotonic() + budget_seconds

    def run(self, rebuild_seconds: float) -> Refreshed:
        state = self.mirror.state()
        if state.generation is not None:
            self.mirror.refreshed(self._incremental(state.generation, state.since))
        if state.building is None and (
                state.generation is None or time.time() - state.filled_at >= rebuild_seconds):
            self.mirror.begin_build((state.generation or 0) + 1, datetime.now(UTC) - OVERLAP)
            state = self.mirror.state()
        if state.building is None:
            return Refreshed(filled=True)
        if not self._fill(state):
            return Refreshed(filled=state.filled, more=True)
        started = state.started or suppressions.EPOCH
        since = self._incremental(state.building, dict.fromkeys(suppressions.KINDS, started))
        self.mirror.switch(state.building, since)
        log.info("opt-out mirror of account %s filled: %d entries", self.mirror.account,
                 self.mirror.size(state.building))
        return Refreshed(filled=True)

    def _fill(self, state: MirrorState) -> bool:
        """Read every page of each kind into the generation being built; False when the
        time budget ran out first (the cursors say where to go on)."""
        assert state.building is not None
        for kind in suppressions.KINDS:
            cursor = state.cursors.get(kind, "")
            while cursor != DONE:
                try:
                    page = suppressions.read_page(self.client, kind, suppressions.EPOCH,
                                                  cursor or None)
                except KlaviyoFatalError:
                    if not cursor:
                        raise
                    log.warning("opt-out mirror of account %s: a saved cursor was refused; "
                                "reading %s again from the start", self.mirror.account, kind)
                    self.mirror.save_cursor(kind, "")  # "" is not DONE: start again
                    cursor = ""
                    continue
                self.mirror.record(state.building, page.opt_outs)
                self.mirror.save_cursor(kind, page.cursor)
                cursor = page.cursor or DONE
                if cursor != DONE and time.monotonic() > self.deadline:
                    return False
        return True

    def _incremental(self, generation: int,
                     since: dict[str, datetime]) -> dict[str, datetime]:
        """Read the profiles suppressed after ``since`` (per kind) into ``generation``; return
        where the next refresh starts: now less ``REFRESH_OVERLAP``, never earlier than before."""
        begun = datetime.now(UTC)
        for kind in suppressions.KINDS:
            cursor: str | None = None
            while True:
                page = suppressions.read_page(self.client, kind,
                                              since.get(kind, suppressions.EPOCH), cursor)
                self.mirror.record(generation, page.opt_outs)
                cursor = page.cursor
                if cursor is None:
                    break
        mark = begun - REFRESH_OVERLAP
        return {k: max(since.get(k, mark), mark) for k in suppressions.KINDS}


def refresh_accounts(jobs: Iterable[ExportJob], client_for: Callable[[ExportJob], KlaviyoClient],
                     mirror_for: Callable[[str], OptOutMirror], *,
                     budget_seconds: float = BEAT_BUDGET_SECONDS) -> float | None:
    """Beat's refresh: each account that has a job respecting opt-outs, once; return when to
    run again for a fill still being built (None: every mirror is complete and current)."""
    again: float | None = None
    seen: set[str] = set()
    for job in jobs:
        if not job.respects_opt_outs:
            continue
        client = client_for(job)
        if client.account in seen:
            continue
        seen.add(client.account)
        try:
            outcome = refresh(mirror_for(client.account), client, budget_seconds=budget_seconds)
        except AuthError as exc:  # the job's flushes report it (auth_failed); no traceback here
            log.warning("opt-out mirror of account %s: Klaviyo refused the key (%s)",
                        client.account, exc.status)
            continue
        if outcome.more:
            again = outcome.wait if again is None else min(again, outcome.wait)
    return again


def screen(state: DesiredState, client: KlaviyoClient, job: ExportJob, list_id: str,
           users: Sequence[Desired]) -> tuple[list[Desired], list[Desired]]:
    """(users who may be subscribed, users who opted out); the latter are counted as omitted
    by reason. Raises :class:`OptOutsNotReady` while the account's mirror is not filled."""
    if not job.respects_opt_outs or not users:
        return list(users), []
    mirror = OptOutMirror(state.redis, state.keys.prefix, client.account)
    reasons = _reasons(mirror, client, [u.email for u in users], list_id)
    if not reasons:
        return list(users), []
    people: dict[str, set[str]] = defaultdict(set)
    for email, reason in reasons.items():
        people[reason].add(digest(email))
    JobCounters(state.redis, state.keys.prefix, job.id).omitted(people)
    log.info("job %s: %d not subscribed: opted out (%s)", job.id, len(reasons),
             ", ".join(f"{r} {len(d)}" for r, d in sorted(people.items())))
    return ([u for u in users if u.email not in reasons],
            [u for u in users if u.email in reasons])


def _reasons(mirror: OptOutMirror, client: KlaviyoClient, emails: list[str],
             list_id: str) -> dict[str, str]:
    state = mirror.state()
    stale_after = STALE_FACTOR * load_settings().optouts_refresh_seconds
    if not state.filled or time.time() - state.refreshed_at > stale_after:
        outcome = refresh(mirror, client, budget_seconds=INLINE_BUDGET_SECONDS)
        if not outcome.filled:
            raise OptOutsNotReady(outcome.wait or NOT_READY_WAIT_SECONDS)
        state = mirror.state()
    return mirror.reasons(emails, list_id, state.generation)
