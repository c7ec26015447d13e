"""Klaviyo bulk import jobs we are waiting on, and what to do when they finish.

A force-add import holds its users in ``inflight`` until Klaviyo reports the job
complete, so a later removal can never overtake it. An attribute import holds
nobody; we only collect its per-profile errors. Each outstanding job is a JSON
record under ``kjob:<id>`` plus a member of the job's ``kjobs`` set.

An import error names its profile by ``original_payload`` when Klaviyo includes it (it is
optional), else by the index in its ``source.pointer``: the record keeps the users in the
order they were sent. A profile refused because its phone number or external id belongs to
another profile (409 ``duplicate_profile``) is not dead-lettered: the value is remembered
(:mod:`worker.state.conflicts`), counted once as ``dropped:<identifier>_conflict``, and the
user is sent again without it. Only what cannot be sent at all is dead-lettered.

Polling stays inside its own limit however many imports are in flight: :func:`poll_all`
asks Klaviyo once (a page of up to 100) for the account's unfinished imports, and only an
import of ours missing from that answer is read on its own, once, to finish it. While
Klaviyo works, and while a poll is put off (our limiter, a 429, a 5xx), the users an import
holds keep their lease (:func:`hold`), so no lapsed lease sends them a second time.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import orjson

from contract import operations as ops
from worker.engine.plan import applied_in
from worker.klaviyo import bulk_import
from worker.klaviyo.bulk_import import ImportFailure
from worker.klaviyo.client import KlaviyoClient
from worker.state.codes import APPLIED_IN, FORGET, RETRY, applied_code
from worker.state.conflicts import IDENTIFIERS, Conflict, ConflictStore, reason
from worker.state.counters import JobCounters, person_digest
from worker.state.deadletter import DeadLetter, DeadLetterStore
from worker.state.desired import Desired, DesiredState

MAX_PROFILES = ops.BULK_IMPORT.batch_cap
MAX_BYTES = (ops.BULK_IMPORT.max_bytes or 0) * 4 // 5  # 4 of 5 MB: room for the envelope
FINISHED = frozenset({"complete", "cancelled", "failed"})
DUPLICATE_PROFILE = "duplicate_profile"
_ITEM = re.compile(r"^/data/attributes/profiles/data/(\d+)(?:/|$)")


def chunks(
    users: Sequence[Desired], record: Callable[[Desired], dict[str, object]]
) -> Iterator[list[Desired]]:
    """Split users into bulk imports under both the count and the size cap."""
    if not users:
        return
    if len(users) <= MAX_PROFILES:  # the usual case, sized in one pass: one import
        size = len(orjson.dumps([record(u) for u in users])) + 64 * len(users)
        if size <= MAX_BYTES:
            yield list(users)
            return
    chunk: list[Desired] = []
    size = 0
    for user in users:
        weight = len(orjson.dumps(record(user))) + 64
        if chunk and (len(chunk) >= MAX_PROFILES or size + weight > MAX_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(user)
        size += weight
    if chunk:
        yield chunk


def create(
    client: KlaviyoClient, records: list[dict[str, object]], list_id: str | None
) -> bulk_import.BulkImportJob:
    return bulk_import.create_bulk_import(client, records, list_id=list_id)


def outstanding_key(state: DesiredState) -> str:
    return state.keys.import_jobs


def register(state: DesiredState, kjob_id: str, users: Sequence[Desired], *, hold: bool) -> None:
    """Remember who is in Klaviyo job ``kjob_id`` until it finishes."""
    record = {"hold": hold, "users": [[u.email, applied_in(u)] for u in users], "at": time.time()}
    pipe = state.redis.pipeline()
    pipe.set(state.keys.import_job(kjob_id), orjson.dumps(record), ex=7 * 86400)
    pipe.zadd(outstanding_key(state), {kjob_id: time.time()})
    pipe.execute()


def outstanding(state: DesiredState) -> list[str]:
    members = cast("list[bytes]", state.redis.zrange(outstanding_key(state), 0, -1))
    return [m.decode() for m in members]


@dataclass(frozen=True)
class PollResult:
    finished: bool
    refused: int = 0


@dataclass(frozen=True)
class RoundResult:
    """One round over every outstanding import of a job."""

    running: int  # ours Klaviyo is still working on
    finished: int = 0
    refused: int = 0


def poll_all(
    state: DesiredState, client: KlaviyoClient, letters: DeadLetterStore, lease_s: float
) -> RoundResult:
    """Poll every outstanding import of the job with one list call (a page per 100
    unfinished imports of the account), then finish those no longer in it."""
    ours = outstanding(state)
    if not ours:
        return RoundResult(running=0)
    unfinished = {job.id for job in bulk_import.iter_unfinished_imports(client)}
    running = [k for k in ours if k in unfinished]
    hold(state, running, lease_s)
    finished = refused = 0
    for kjob_id in ours:
        if kjob_id in unfinished:
            continue
        result = poll(state, client, letters, kjob_id, lease_s)  # confirms, then finishes
        if result.finished:
            finished += 1
            refused += result.refused
        else:  # listed a moment too early: still running
            running.append(kjob_id)
    return RoundResult(running=len(running), finished=finished, refused=refused)


def hold(state: DesiredState, kjob_ids: Sequence[str] | None, lease_s: float) -> None:
    """Extend the lease of every user these imports (None: all outstanding) hold, to
    ``lease_s`` from now: Klaviyo is still working, or the poll was put off."""
    ids = outstanding(state) if kjob_ids is None else list(kjob_ids)
    if not ids:
        return
    raws = cast("list[bytes | None]", state.redis.mget([state.keys.import_job(k) for k in ids]))
    held = [e for raw in raws if raw for e, _ in _held_users(orjson.loads(raw))]
    state.extend(held, int((time.time() + lease_s) * 1000))


def _held_users(record: dict[str, Any]) -> list[list[str]]:
    return record["users"] if record["hold"] else []


def poll(
    state: DesiredState, client: KlaviyoClient, letters: DeadLetterStore, kjob_id: str,
    lease_s: float,
) -> PollResult:
    """Check one import job; when it is done, dead-letter its failures and release its users."""
    raw = state.redis.get(state.keys.import_job(kjob_id))
    if raw is None:
        state.redis.zrem(outstanding_key(state), kjob_id)
        return PollResult(finished=True)
    record = orjson.loads(raw)
    job = bulk_import.get_bulk_import(client, kjob_id)
    users: list[list[str]] = record["users"]
    if job.status not in FINISHED:
        state.extend(
            [e for e, _ in users] if record["hold"] else [], int((time.time() + lease_s) * 1000)
        )
        return PollResult(finished=False)
    failures = (
        _refused(client, kjob_id, [e for e, _ in users])
        if job.failed or job.status != "complete"
        else {}
    )
    resend = _conflicts(state, failures)
    refused = {
        e: f"{f.code}: {f.detail or f.title}" for e, f in failures.items() if e not in resend
    }
    _finish(
        state, letters=letters, kjob_id=kjob_id, record=record, refused=refused, status=job.status,
        resend=resend,
    )
    return PollResult(finished=True, refused=len(refused))


def _refused(client: KlaviyoClient, kjob_id: str, emails: list[str]) -> dict[str, ImportFailure]:
    """Email → Klaviyo's error, for each profile the import refused (a conflict preferred when
    a profile has several errors)."""
    errors = list(bulk_import.iter_import_errors(client, kjob_id))  # each page is charged
    known = set(emails)
    out: dict[str, ImportFailure] = {}
    for err in errors:
        email = (err.email or "").strip().lower()
        if email not in known:
            email = _by_pointer(err.pointer, emails) or ""
        if email and (email not in out or err.code == DUPLICATE_PROFILE):
            out[email] = err
    return out


def _by_pointer(pointer: str | None, emails: list[str]) -> str | None:
    """The user an error's ``source.pointer`` names by its index in the job, if any."""
    found = _ITEM.match(pointer or "")
    index = int(found.group(1)) if found else -1
    return emails[index] if 0 <= index < len(emails) else None


def _conflicting(failure: ImportFailure) -> tuple[str, ...]:
    """The identifiers a ``duplicate_profile`` error can be about: the one its pointer names,
    else every identifier that can conflict."""
    if failure.code != DUPLICATE_PROFILE:
        return ()
    named = (failure.pointer or "").rsplit("/", 1)[-1]
    return (named,) if named in IDENTIFIERS else IDENTIFIERS


def _conflicts(state: DesiredState, failures: dict[str, ImportFailure]) -> set[str]:
    """Remember each 409's conflicting identifier values and count them; return the users to
    send again without them (those for whom a value not yet known to conflict was sent)."""
    candidates = {e: ids for e, f in failures.items() if (ids := _conflicting(f))}
    if not candidates:
        return set()
    store = ConflictStore(state.redis, state.keys)
    known = store.read(list(candidates))
    found: dict[str, Conflict] = {}
    for user in state.read(list(candidates)):
        mine = known.get(user.email, {})
        # one identifier at a time (the one named, else phone first): a 409 that does not say
        # which identifier is taken costs one more import, not a value that was fine
        new = next(({k: v} for k in candidates[user.email]
                    if isinstance(v := user.attributes.get(k), str) and v and mine.get(k) != v),
                   None)
        if new:
            found[user.email] = new
    store.add(found)
    people: dict[str, set[str]] = {}
    for email, conflict in found.items():
        for identifier in conflict:
            people.setdefault(reason(identifier), set()).add(person_digest(f"email:{email}"))
    JobCounters(state.redis, state.keys.prefix, state.keys.job_id).dropped(people)
    return set(found)


def _finish(
    state: DesiredState,
    *,
    letters: DeadLetterStore,
    kjob_id: str,
    record: dict[str, Any],
    refused: dict[str, str],
    status: str,
    resend: set[str] | frozenset[str] = frozenset(),
) -> None:
    users: list[list[str]] = record["users"]
    source = "klaviyo:" + ops.BULK_IMPORT.name
    if not state.redis.zrem(outstanding_key(state), kjob_id):
        return  # another poll finished it first: its users are released once
    now = int(time.time() * 1000)
    if refused:
        letters.add([DeadLetter(email=e, reason=r, source=source) for e, r in refused.items()])
    if record["hold"]:
        ok = status == "complete"
        state.release(
            [(e, FORGET if e in refused else (val if ok and e not in resend else RETRY))
             for e, val in users], now
        )
    elif resend:
        # an attribute refresh, released already: its fields are sent again (without the
        # conflicting value) by recording them as not yet sent
        again = [u for u in state.read(sorted(resend)) if u.applied_in]
        state.set_applied([(u.email, applied_code(APPLIED_IN, "")) for u in again])
        state.release([(u.email, RETRY) for u in again], now)
    pipe = state.redis.pipeline()
    pipe.delete(state.keys.import_job(kjob_id))
    pipe.zrem(outstanding_key(state), kjob_id)
    pipe.execute()
