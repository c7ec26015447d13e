"""What ``start`` would do, worked out with reads only (``start --dry-run``).

:func:`resolve_list` finds the list the way the bootstrap would (the job's known list, its
``list_id``, else the list named so), without creating one. :func:`plan_start` runs the
backfill's own chunk marking (:func:`worker.engine.backfill_rows.chunk_marks`) and the
record rules (newest event per audience wins; a tie goes to the exit) against the desired
state in Redis, then the flush's own plan (:func:`worker.engine.plan.make_plan`), so its
counts are what the real start then does: people to subscribe or force-add, attribute
refreshes, removals, people already there, and people omitted by reason.
:func:`implied_seconds` turns the calls into the time Klaviyo's limits imply.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
import redis

from contract import operations as ops
from core.chunks import Chunk
from core.jobs import ExportJob
from core.keys import JobKeys, account_ids_key
from worker.engine.audit import patiently
from worker.engine.backfill_rows import chunk_marks
from worker.engine.plan import make_plan
from worker.klaviyo import lists
from worker.klaviyo.client import KlaviyoClient
from worker.klaviyo.errors import NotFound
from worker.state import codes
from worker.state.desired import Desired, pad_ts

READ_CHUNK = 1000


@dataclass(frozen=True)
class ListPlan:
    """The list a start would use, or create."""

    list_id: str | None  # None: it would be created
    name: str
    opt_in_process: str | None  # for a list to create: the job's request (None: the default)
    flows: tuple[dict[str, Any], ...] = ()

    @property
    def created(self) -> bool:
        return self.list_id is None


def resolve_list(job: ExportJob, known_list_id: str | None, client: KlaviyoClient) -> ListPlan:
    """The list the bootstrap would settle on, and the flows adding people to it triggers."""
    list_id = job.list_id or known_list_id
    found: lists.KlaviyoList | None = None
    if list_id:
        try:
            found = patiently(lambda: lists.get_list(client, str(list_id)))
        except NotFound:
            raise ValueError(f"list {list_id} does not exist; start would fail") from None
    else:
        found = patiently(lambda: lists.find_list_by_name(client, job.list_name()))
    if found is None:
        return ListPlan(None, job.list_name(), job.opt_in_process)
    flows = patiently(lambda: lists.flows_triggered_by_list(client, found.id))
    return ListPlan(found.id, found.name, found.opt_in_process, tuple(flows))


@dataclass
class StartPlan:
    """What a start would send, in people and in calls."""

    people: int = 0  # people the source names (rows and left out)
    join: int = 0  # subscribed (or force-added)
    refresh: int = 0  # already members, newer fields sent
    remove: int = 0
    unchanged: int = 0  # already where they should be
    omitted: Counter[str] = field(default_factory=Counter)
    known_profiles: int = 0  # of the joins, people whose Klaviyo profile id is cached
    with_fields: int = 0  # of the joins, people with mapped fields (an import on subscribe)

    def calls(self, job: ExportJob) -> dict[str, int]:
        """Klaviyo calls by operation name, the way the flush batches them."""
        found: dict[str, int] = {}
        if job.force_add:
            found[ops.BULK_IMPORT.name] = _batches(self.join + self.refresh, ops.BULK_IMPORT)
        else:
            found[ops.BULK_SUBSCRIBE.name] = _batches(self.join, ops.BULK_SUBSCRIBE)
            found[ops.BULK_IMPORT.name] = _batches(self.with_fields + self.refresh,
                                                   ops.BULK_IMPORT)
        found[ops.REMOVE_PROFILES_FROM_LIST.name] = _batches(self.remove,
                                                             ops.REMOVE_PROFILES_FROM_LIST)
        found[ops.GET_PROFILES.name] = _batches(self.remove, ops.GET_PROFILES)
        return {name: n for name, n in found.items() if n}

    def as_dict(self, job: ExportJob, headroom: float) -> dict[str, Any]:
        mode = "force_add" if job.force_add else "subscribe"
        calls = self.calls(job)
        return {"people": self.people, mode: self.join, "refresh": self.refresh,
                "remove": self.remove, "unchanged": self.unchanged,
                "omitted": dict(sorted(self.omitted.items())),
                "omitted_total": self.omitted.total(), "known_profiles": self.known_profiles,
                "calls": calls, "seconds": round(implied_seconds(calls, headroom), 1)}


def _batches(n: int, op: ops.Operation) -> int:
    return math.ceil(n / op.batch_cap) if n else 0


def implied_seconds(calls: dict[str, int], headroom: float) -> float:
    """How long Klaviyo's limits make these calls take at best: each operation has its own
    windows, so the slowest operation sets the time (burst within a minute window, then one
    window per ``steady`` calls)."""
    longest = 0.0
    for name, n in calls.items():
        op = ops.BY_NAME[name]
        per_minute = max(1, math.floor(op.steady * headroom))
        per_second = max(1.0, op.burst * headroom)
        windows = math.ceil(n / per_minute)
        last = n - (windows - 1) * per_minute
        longest = max(longest, (windows - 1) * 60.0 + last / per_second)
    return longest


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")


def _newer(current: str | None, action: str, ts: str) -> bool:
    """The record script's rule: the newest event wins; on a tie an exit beats an enter."""
    if not current:
        return True
    cts = current[2:]
    if ts != cts:
        return ts > cts
    return action == codes.EXIT and current[:1] == codes.ENTER


class _Person:
    __slots__ = ("fields", "marks")

    def __init__(self) -> None:
        self.marks: dict[str, str] = {}  # audience → padded ts of its newest enter
        self.fields: tuple[str, str] | None = None  # (padded ts, JSON) of the newest fields


def plan_start(job: ExportJob, chunks: Iterable[Chunk], store: redis.Redis, keys: JobKeys,
               account: str) -> StartPlan:
    """Count what recording these chunks' enters and flushing would do (module doc)."""
    plan = StartPlan()
    people: dict[str, _Person] = {}
    for chunk in chunks:
        plan.people += chunk.people
        marked = chunk_marks(job, chunk)
        plan.omitted.update(marked.omitted)
        for mark in marked.marks:
            person = people.setdefault(mark.email, _Person())
            ts = pad_ts(mark.ts_ns)
            person.marks[mark.audience] = max(ts, person.marks.get(mark.audience, ts))
            if mark.attributes:
                body = orjson.dumps(mark.attributes, option=orjson.OPT_SORT_KEYS).decode()
                if person.fields is None or person.fields[0] < ts:
                    person.fields = (ts, body)
    emails = list(people)
    for start in range(0, len(emails), READ_CHUNK):
        _judge(job, emails[start:start + READ_CHUNK], people, store=store, keys=keys,
               account=account, plan=plan)
    return plan


def _judge(job: ExportJob, batch: list[str], people: dict[str, _Person], *,
           store: redis.Redis, keys: JobKeys, account: str, plan: StartPlan) -> None:
    pipe = store.pipeline(transaction=False)
    for email in batch:
        pipe.hgetall(keys.user(email))
        pipe.get(keys.fields(email))
    raw = pipe.execute()
    applied = cast("list[bytes | None]", store.hmget(keys.applied, batch))
    cached = cast("list[bytes | None]", store.hmget(account_ids_key(keys.prefix, account), batch))
    desired: list[Desired] = []
    for i, email in enumerate(batch):
        states = {_text(k): _text(v) for k, v in raw[2 * i].items()}
        person = people[email]
        for audience, ts in person.marks.items():
            if _newer(states.get(audience), codes.ENTER, ts):
                states[audience] = f"{codes.ENTER}{codes.EVENT_SEP}{ts}"
        member = any(v.startswith(codes.ENTER) for v in states.values())
        fields_ts, _, body = _text(raw[2 * i + 1]).partition(codes.FIELDS_SEP)
        if person.fields is not None and member and (not fields_ts or fields_ts < person.fields[0]):
            fields_ts, body = person.fields
        attributes = orjson.loads(body) if body else {}
        desired.append(Desired(email, member, fields_ts, attributes, _text(applied[i]) or None))
    result = make_plan(desired, removes_on_exit=job.removes_on_exit)
    joining = {u.email for u in result.join}
    plan.join += len(result.join)
    plan.refresh += len(result.refresh)
    plan.remove += len(result.leave)
    plan.unchanged += len(result.unchanged) + len(result.kept)
    plan.with_fields += sum(1 for u in result.join if u.attributes)
    plan.known_profiles += sum(1 for e, c in zip(batch, cached, strict=True)
                               if c and e in joining)
