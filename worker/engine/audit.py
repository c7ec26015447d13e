"""Read the job's Klaviyo list back and compare it with the desired state: drift, by kind.

Nothing else in the product reads a list back: subscribe jobs have no status, double opt-in
people join whenever they click (possibly after they left the audience), marketers add and
remove people by hand, and an asynchronous job can land after a later removal. The audit pages
the list's members (100 a call, every call charged to the shared limiter: at Klaviyo's
list-read limit of 750 calls a minute that is 75,000 members a minute), reads the job's
desired state from Redis, and sorts every difference:

*missing* (in an audience, not on the list)
    ``dead_lettered``: Klaviyo refused them (``dlq``); ``suppressed``: Klaviyo suppresses them
    (globally or from this list) and they cannot be on it; ``awaiting_confirmation``: a double
    opt-in list the job subscribed them to, and Klaviyo records no consent yet;
    ``unexplained``: anything else (removed by hand, a subscribe that never landed).
*extra* (on the list, in no audience)
    ``confirmed_after_exit``: the job subscribed and later removed them on a double opt-in list,
    and they confirmed afterwards; ``overtaken_by_async_job``: the same on a list without
    confirmation (or a force add): the asynchronous job landed after the removal;
    ``added_by_hand``: the job never had them.

People the engine is still working on (pending, held by a flusher, just subscribed and
settling, a removal waiting for its profile) are counted as ``in_transit``, not drift. An
add-only job (``on_exit = "keep"``) keeps leavers on purpose: they are ``kept``, not drift.

:func:`repair` hands the drift it may fix back to the engine (:mod:`worker.state.audits`):
``unexplained`` missing people are subscribed again; extra people the job itself put there are
removed, and people added by hand too only when the job has ``mirror = true``. Suppressed,
unconfirmed and dead-lettered people are never re-sent (a subscribe would lift a suppression or
send a second confirmation email): the report says why they are missing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis

from contract import operations as ops
from core.jobs import ExportJob
from core.keys import JobKeys, account_ids_key
from core.redact import mask_email
from core.runs import audit_entry, record_run
from worker.klaviyo import lists
from worker.klaviyo.client import KlaviyoClient
from worker.klaviyo.errors import RateLimited, TransientError
from worker.klaviyo.standing import Standing, standings
from worker.limits import retry
from worker.limits.gate import Throttled
from worker.state import codes
from worker.state.audits import REJOIN, REMOVE, AuditStore
from worker.state.deadletter import DeadLetterStore

MISSING_KINDS = ("awaiting_confirmation", "suppressed", "dead_lettered", "unexplained")
EXTRA_KINDS = ("confirmed_after_exit", "overtaken_by_async_job", "added_by_hand")
SAMPLE = 10
TRANSIENT_ATTEMPTS = 8  # passing errors in a row on one page before the audit gives up
SCAN_COUNT = 5000
READ_CHUNK = 1000
T = TypeVar("T")
Sleep = Callable[[float], None]


def patiently(call: Callable[[], T], sleep: Sleep = time.sleep) -> T:
    """``call()``, waiting out our limiter, 429s and passing errors (a few, with backoff).

    An audit reads a whole list at the limit, so a throttle is the normal case, not an error.
    """
    failures = 0
    while True:
        try:
            return call()
        except Throttled as exc:
            sleep(exc.wait)
        except RateLimited as exc:
            sleep(retry.rate_limited(exc.retry_after))
        except TransientError:
            failures += 1
            if failures >= TRANSIENT_ATTEMPTS:
                raise
            sleep(retry.after_flush_failures(failures))


@dataclass
class ListRead:
    """The list as Klaviyo shows it: email → profile id, and members without an email."""

    members: dict[str, str] = field(default_factory=dict)
    phone_only: list[str] = field(default_factory=list)
    pages: int = 0
    seconds: float = 0.0
    started_at: float = 0.0  # epoch seconds of the first page

    @property
    def size(self) -> int:
        return len(self.members) + len(self.phone_only)


def read_list(
    client: KlaviyoClient,
    list_id: str,
    on_page: Callable[[int], None] | None = None,
    sleep: Sleep = time.sleep,
) -> ListRead:
    """Every member of ``list_id``, page by page; ``on_page(n)`` after each page of n."""
    read = ListRead(started_at=time.time())
    started = time.monotonic()
    cursor: str | None = None
    while True:
        page, cursor = _page(client, list_id, cursor, sleep)
        read.pages += 1
        for member in page:
            if member.email:
                read.members[member.email] = member.id
            else:
                read.phone_only.append(member.id)
        if on_page is not None:
            on_page(len(page))
        if cursor is None:
            break
    read.seconds = time.monotonic() - started
    return read


def _page(client: KlaviyoClient, list_id: str, cursor: str | None,
          sleep: Sleep) -> tuple[list[lists.ListMember], str | None]:
    return patiently(lambda: lists.list_members_page(client, list_id, cursor), sleep)


@dataclass
class DesiredRead:
    """The job's desired state: who should be on the list, and what Klaviyo was last told."""

    members: set[str] = field(default_factory=set)
    applied: dict[str, str] = field(default_factory=dict)  # every user with desired state
    known: set[str] = field(default_factory=set)  # every user with desired state
    in_transit: set[str] = field(default_factory=set)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def in_transit(client: redis.Redis, keys: JobKeys, now_ms: int | None = None) -> set[str]:
    """Users the engine is working on: pending, held, settling or waiting for a profile."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    pipe = client.pipeline(transaction=False)
    pipe.zrange(keys.pending, 0, -1)
    pipe.zrange(keys.inflight, 0, -1)
    pipe.zrangebyscore(keys.settling, now, "+inf")
    pipe.hkeys(keys.removal_waits)
    found: set[str] = set()
    for part in pipe.execute():
        found.update(_text(e) for e in part)
    return found


def in_transit_of(
    client: redis.Redis, keys: JobKeys, emails: Sequence[str], now_ms: int | None = None,
) -> set[str]:
    """Which of ``emails`` the engine is working on (as :func:`in_transit`), asked of these
    few alone: one round trip, whatever the size of the queues."""
    if not emails:
        return set()
    now = int(time.time() * 1000) if now_ms is None else now_ms
    pipe = client.pipeline(transaction=False)
    for email in emails:
        pipe.zscore(keys.pending, email)
        pipe.zscore(keys.inflight, email)
        pipe.zscore(keys.settling, email)
        pipe.hexists(keys.removal_waits, email)
    replies = pipe.execute()
    found = set()
    for i, email in enumerate(emails):
        pending, inflight, settling, waiting = replies[4 * i:4 * i + 4]
        if pending is not None or inflight is not None or waiting or (
                settling is not None and settling >= now):
            found.add(email)
    return found


def read_desired(client: redis.Redis, keys: JobKeys, since_ms: int | None = None) -> DesiredRead:
    """Every user of the job (a SCAN of the desired-state hashes) with membership and codes.

    A user Klaviyo was told about at or after ``since_ms`` (when the list's first page was
    read) changed while the list was being read: counted in transit, never as drift.
    """
    read = DesiredRead(in_transit=in_transit(client, keys))
    cut = len(keys.user(""))
    names = (_text(k)[cut:] for k in client.scan_iter(match=keys.users_pattern, count=SCAN_COUNT))
    survey = AuditStore(client, keys).survey
    for batch in _chunks(names, READ_CHUNK):
        for email, (member, code, told_ms) in zip(batch, survey(batch), strict=True):
            read.known.add(email)
            if since_ms is not None and told_ms >= since_ms:
                read.in_transit.add(email)
            if member:
                read.members.add(email)
            if code:
                read.applied[email] = code
    return read


def dead_letter_emails(client: redis.Redis, keys: JobKeys) -> set[str]:
    """The emails of the job's dead letters."""
    store = DeadLetterStore(client, keys.prefix, keys.job_id)
    return {letter.email.lower() for letter in store.list(store.cap) if letter.email}


def _told_to_join(code: str | None) -> bool:
    return bool(code) and str(code).startswith(
        (codes.APPLIED_IN + codes.FIELDS_SEP, codes.APPLIED_TRY + codes.FIELDS_SEP))


@dataclass
class Audit:
    """One audit's findings: each kind's people, and the figures around them."""

    job_id: str
    list_id: str
    opt_in_process: str | None
    missing: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in MISSING_KINDS})
    extra: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in EXTRA_KINDS})
    extra_ids: dict[str, str] = field(default_factory=dict)  # extra email → profile id
    phone_only: list[str] = field(default_factory=list)  # extra profile ids without an email
    in_transit: int = 0
    kept: int = 0
    list_members: int = 0
    desired_members: int = 0
    pages: int = 0
    seconds: float = 0.0
    read_started_at: float = 0.0
    at: float = field(default_factory=time.time)
    mirror: bool = False

    @property
    def missing_count(self) -> int:
        return sum(len(v) for v in self.missing.values())

    @property
    def extra_count(self) -> int:
        return sum(len(v) for v in self.extra.values()) + len(self.phone_only)

    @property
    def actionable(self) -> int:
        """Drift the job is responsible for (``health`` compares it with its threshold):
        unexplained missing people, and extra people a repair would remove."""
        by_hand = len(self.extra["added_by_hand"]) + len(self.phone_only)
        return (len(self.missing["unexplained"]) + self.extra_count
                - (0 if self.mirror else by_hand))

    def summary(self, sample: int = SAMPLE) -> dict[str, Any]:
        """JSON-ready: top-level ``missing`` and ``extra`` counts, then the breakdown, with a
        masked sample of each kind."""
        def kinds(found: dict[str, list[str]]) -> dict[str, Any]:
            return {k: {"count": len(v), "sample": [mask_email(e) for e in sorted(v)[:sample]]}
                    for k, v in found.items()}

        extra = kinds(self.extra)
        extra["added_by_hand"]["count"] += len(self.phone_only)
        minutes = self.seconds / 60
        return {
            "job": self.job_id, "list_id": self.list_id, "opt_in_process": self.opt_in_process,
            "missing": self.missing_count, "extra": self.extra_count,
            "breakdown": {"missing": kinds(self.missing), "extra": extra},
            "actionable": self.actionable, "in_transit": self.in_transit, "kept": self.kept,
            "list_members": self.list_members, "desired_members": self.desired_members,
            "pages": self.pages, "seconds": round(self.seconds, 3),
            "read_started_at": self.read_started_at,
            "members_per_minute": round(self.list_members / minutes) if minutes else None,
            "at": self.at,
        }


def compare(
    job: ExportJob,
    listed: ListRead,
    desired: DesiredRead,
    *,
    list_id: str,
    opt_in_process: str | None,
    dead: set[str],
    standing_of: Callable[[Sequence[str]], dict[str, Standing]],
) -> Audit:
    """Sort every difference between the list and the desired state by kind (module doc).

    ``standing_of`` looks people up in Klaviyo (consent, suppressions): it is asked only about
    missing people that nothing else explains.
    """
    audit = Audit(job.id, list_id, opt_in_process, list_members=listed.size,
                  desired_members=len(desired.members), pages=listed.pages,
                  seconds=listed.seconds, read_started_at=listed.started_at, mirror=job.mirror)
    confirms = opt_in_process == "double_opt_in" and not job.force_add
    transit = desired.in_transit
    missing = sorted(desired.members - listed.members.keys())
    audit.in_transit = sum(1 for e in missing if e in transit)
    to_look_up = [e for e in missing if e not in transit and e not in dead]
    audit.missing["dead_lettered"] = [e for e in missing if e not in transit and e in dead]
    found = standing_of(to_look_up) if to_look_up else {}
    for email in to_look_up:
        standing = found.get(email)
        if standing is not None and standing.suppressed_for(list_id):
            audit.missing["suppressed"].append(email)
        elif (confirms and _told_to_join(desired.applied.get(email))
              and not (standing is not None and standing.subscribed)):
            audit.missing["awaiting_confirmation"].append(email)
        else:
            audit.missing["unexplained"].append(email)
    for email in sorted(listed.members.keys() - desired.members):
        if email in transit:
            audit.in_transit += 1
        elif email not in desired.known:
            audit.extra["added_by_hand"].append(email)
        elif not job.removes_on_exit:
            audit.kept += 1
        elif confirms:
            audit.extra["confirmed_after_exit"].append(email)
        else:
            audit.extra["overtaken_by_async_job"].append(email)
    audit.extra_ids = {e: listed.members[e] for kind in audit.extra.values() for e in kind}
    audit.phone_only = list(listed.phone_only)
    return audit


def run_audit(
    job: ExportJob,
    *,
    list_id: str,
    opt_in_process: str | None,
    client: KlaviyoClient,
    store: redis.Redis,
    keys: JobKeys,
    on_page: Callable[[int], None] | None = None,
    sleep: Sleep = time.sleep,
) -> Audit:
    """Read the list and the desired state, compare them, keep the summary for ``status``."""
    listed = read_list(client, list_id, on_page, sleep)
    desired = read_desired(store, keys, since_ms=int(listed.started_at * 1000))
    desired.in_transit |= in_transit(store, keys)  # anyone who became pending while we read
    audit = compare(job, listed, desired, list_id=list_id, opt_in_process=opt_in_process,
                    dead=dead_letter_emails(store, keys),
                    standing_of=lambda emails: patiently(lambda: standings(client, emails), sleep))
    AuditStore(store, keys).save(audit.summary())
    record_run(store, keys.prefix, keys.job_id, audit_entry(audit.summary()))  # `runs` shows it
    return audit


@dataclass(frozen=True)
class Repair:
    """What a repair handed back to the engine, and what it left alone."""

    rejoin: int
    remove: int
    left: dict[str, int]  # kind → people a repair does not touch (and why, by kind)

    def as_dict(self) -> dict[str, Any]:
        return {"rejoin": self.rejoin, "remove": self.remove, "left": self.left}


def repair(audit: Audit, job: ExportJob, client: KlaviyoClient, store: redis.Redis,
           keys: JobKeys) -> Repair:
    """Hand the drift the job's policies allow back to the engine (module doc); the caller
    then asks for a flush. Extra people's profile ids go to the account's id cache, so their
    removal needs no look-up."""
    removing = [*audit.extra["confirmed_after_exit"], *audit.extra["overtaken_by_async_job"]]
    if job.mirror:
        removing += audit.extra["added_by_hand"]
    if not job.removes_on_exit:
        removing = []
    if removing:
        ids = {e: audit.extra_ids[e] for e in removing}
        store.hset(account_ids_key(keys.prefix, client.account), mapping=ids)  # type: ignore[arg-type]
    state = AuditStore(store, keys)
    rejoined = state.requeue([(e, REJOIN) for e in audit.missing["unexplained"]])
    removed = state.requeue([(e, REMOVE) for e in removing])
    left = {f"missing:{k}": len(v) for k, v in audit.missing.items()
            if k != "unexplained" and v}
    if not job.mirror and (audit.extra["added_by_hand"] or audit.phone_only):
        left["extra:added_by_hand"] = len(audit.extra["added_by_hand"]) + len(audit.phone_only)
    if job.mirror and audit.phone_only:
        patiently(lambda: _remove_ids(client, audit.list_id, audit.phone_only))
        removed += len(audit.phone_only)
    return Repair(rejoin=rejoined, remove=removed, left=left)


def _remove_ids(client: KlaviyoClient, list_id: str, ids: Sequence[str]) -> None:
    """Members without an email have no desired state: a mirror removes them by id."""
    chunk = ops.REMOVE_PROFILES_FROM_LIST.batch_cap
    for start in range(0, len(ids), chunk):
        lists.remove_profiles_from_list(client, list_id, ids[start : start + chunk])
