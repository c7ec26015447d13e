"""Klaviyo bulk import jobs we are waiting on, and what to do when they finish.

A force-add import holds its users in ``inflight`` until Klaviyo reports the job
complete, so a later removal can never overtake it. An attribute refresh holds
nobody; we only collect its per-profile errors. Each outstanding job is a JSON
record under ``kjob:<id>`` plus a member of the job's ``kjobs`` set.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import orjson

from contract import operations as ops
from worker.engine.plan import applied_in
from worker.klaviyo import bulk_import
from worker.klaviyo.client import KlaviyoClient
from worker.state.codes import FORGET, RETRY
from worker.state.deadletter import DeadLetter, DeadLetterStore
from worker.state.desired import Desired, DesiredState

MAX_PROFILES = ops.BULK_IMPORT.batch_cap
MAX_BYTES = (ops.BULK_IMPORT.max_bytes or 0) * 4 // 5  # 4 of 5 MB: room for the envelope
FINISHED = frozenset({"complete", "cancelled", "failed"})


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
    refused = (
        _refused(client, kjob_id, {e for e, _ in users})
        if job.failed or job.status != "complete"
        else {}
    )
    _finish(
        state, letters=letters, kjob_id=kjob_id, record=record, refused=refused, status=job.status
    )
    return PollResult(finished=True, refused=len(refused))


def _refused(client: KlaviyoClient, kjob_id: str, emails: set[str]) -> dict[str, str]:
    """Email → Klaviyo's reason, for each profile the import refused."""
    errors = list(bulk_import.iter_import_errors(client, kjob_id))  # each page is charged
    out: dict[str, str] = {}
    for err in errors:
        email = (err.email or "").strip().lower()
        if email in emails:
            out[email] = f"{err.code}: {err.detail or err.title}"
    return out


def _finish(
    state: DesiredState,
    *,
    letters: DeadLetterStore,
    kjob_id: str,
    record: dict[str, Any],
    refused: dict[str, str],
    status: str,
) -> None:
    users: list[list[str]] = record["users"]
    source = "klaviyo:" + ops.BULK_IMPORT.name
    if refused:
        letters.add([DeadLetter(email=e, reason=r, source=source) for e, r in refused.items()])
    if record["hold"]:
        ok = status == "complete"
        now = int(time.time() * 1000)
        state.release(
            [(e, FORGET if e in refused else (val if ok else RETRY)) for e, val in users], now
        )
    pipe = state.redis.pipeline()
    pipe.delete(state.keys.import_job(kjob_id))
    pipe.zrem(outstanding_key(state), kjob_id)
    pipe.execute()
