"""The opt-out mirror of one Klaviyo account: who must not be subscribed, kept in Redis.

Klaviyo's subscribe endpoint lifts ``UNSUBSCRIBE``, ``SPAM_COMPLAINT`` and ``USER_SUPPRESSED``
suppressions, so subscribing someone who opted out would opt them back in. The mirror holds
every unsubscribed or suppressed person of the account, compactly: one hash per
*generation* (``core.keys.optouts_key``) whose fields are 8-byte person digests (never an
address) for global opt-outs, and ``<digest>:<list id>`` for suppressions from one list;
each value is the reason, ``unsubscribed`` or ``suppressed``. One ``HMGET`` answers a whole
subscribe chunk.

The meta hash (``core.keys.optouts_meta_key``) says which generation is in force (none:
the mirror was never filled, and nobody may be subscribed), when it was filled and last
refreshed, the suppression times the incremental refresh reads from, and the generation
being built (a first fill, or a periodic rebuild) with its page cursors, so a fill cut
short goes on where it stopped.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from redis import Redis

from core.keys import optouts_key, optouts_lock_key, optouts_meta_key
from worker.klaviyo.suppressions import KINDS, REASONS, OptOut, parse_time
from worker.state.codes import ITEM_SEP
from worker.state.counters import person_digest

DONE = "done"  # a kind's cursor once all its pages were read

# one character per digest, in order: the reason's initial (``u``/``s``), or NONE
NONE = "-"
BY_INITIAL = {reason[0]: reason for reason in REASONS}
# KEYS[1] a generation's hash | ARGV[1] digests joined by ARGV[3], ARGV[2] ":<list id>"
_LOOKUP = """
local key, suffix, digests, listed = KEYS[1], ARGV[2], {}, {}
for d in string.gmatch(ARGV[1], '[^' .. ARGV[3] .. ']+') do
  digests[#digests + 1] = d
  listed[#listed + 1] = d .. suffix
end
local global = redis.call('HMGET', key, unpack(digests))
local per_list = redis.call('HMGET', key, unpack(listed))
local out = {}
for i = 1, #digests do
  local v = global[i] or per_list[i]
  out[i] = v and string.sub(v, 1, 1) or '-'
end
return table.concat(out)
"""


class MirrorNotFilled(Exception):
    """The account's mirror was never filled: nobody may be subscribed yet."""


def digest(email: str) -> str:
    """The person digest of an email (the one the job's people sets use)."""
    return person_digest(f"email:{email.strip().lower()}")


@dataclass(frozen=True)
class MirrorState:
    """The meta hash, read at one moment."""

    generation: int | None = None  # in force; None: never filled
    filled_at: float = 0.0  # epoch seconds the generation in force was complete
    refreshed_at: float = 0.0  # epoch seconds of the last refresh that read everything new
    since: dict[str, datetime] = field(default_factory=dict)  # kind → where the next read starts
    building: int | None = None  # the generation being filled
    started: datetime | None = None  # when the fill being built began (suppression time)
    cursors: dict[str, str] = field(default_factory=dict)  # kind → next cursor, or DONE

    @property
    def filled(self) -> bool:
        return self.generation is not None


class OptOutMirror:
    """Read and write one account's mirror."""

    def __init__(self, redis: Redis, prefix: str, account: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self.account = account
        self.meta_key = optouts_meta_key(prefix, account)
        self.lock_key = optouts_lock_key(prefix, account)

    def key(self, generation: int) -> str:
        return optouts_key(self.prefix, self.account, generation)

    # --- reading ----------------------------------------------------------------------------
    def state(self) -> MirrorState:
        raw = {_text(k): _text(v) for k, v in self.redis.hgetall(self.meta_key).items()}
        since = {k: t for k in KINDS if (t := parse_time(raw.get(f"since:{k}"))) is not None}
        return MirrorState(
            generation=int(raw["gen"]) if raw.get("gen") else None,
            filled_at=float(raw.get("filled_at") or 0),
            refreshed_at=float(raw.get("refreshed_at") or 0),
            since=since,
            building=int(raw["building"]) if raw.get("building") else None,
            started=parse_time(raw.get("started")),
            cursors={k: raw[f"cursor:{k}"] for k in KINDS if f"cursor:{k}" in raw},
        )

    def reasons(self, emails: Sequence[str], list_id: str,
                generation: int | None = None) -> dict[str, str]:
        """Email → ``unsubscribed``/``suppressed`` for those who opted out, globally or from
        ``list_id`` (a global reason wins), in one script call; raises MirrorNotFilled before
        the first fill (``generation``: the one in force, when the caller just read it)."""
        if generation is None:
            gen = self.redis.hget(self.meta_key, "gen")
            if not gen:
                raise MirrorNotFilled(self.account)
            generation = int(gen)
        if not emails:
            return {}
        digests = ITEM_SEP.join(digest(e) for e in emails)
        found = _text(self.redis.register_script(_LOOKUP)(
            keys=[self.key(generation)], args=[digests, ":" + list_id, ITEM_SEP]))
        return {email: BY_INITIAL[code] for email, code in zip(emails, found, strict=True)
                if code != NONE}

    def size(self, generation: int | None = None) -> int:
        """Entries in a generation (the one in force by default): people and list pairs."""
        gen = self.state().generation if generation is None else generation
        return int(self.redis.hlen(self.key(gen))) if gen is not None else 0

    # --- writing ----------------------------------------------------------------------------
    def record(self, generation: int, opt_outs: Iterable[OptOut]) -> int:
        """Write what each profile's consent says now: a global reason is set or cleared;
        list suppressions are set. Returns how many profiles were written."""
        sets: dict[str, str] = {}
        clears: list[str] = []
        n = 0
        for o in opt_outs:
            n += 1
            d = digest(o.email)
            if o.reason:
                sets[d] = o.reason
            else:
                clears.append(d)
            sets.update({f"{d}:{lid}": why for lid, why in o.lists.items()})
        pipe = self.redis.pipeline(transaction=False)
        if clears:
            pipe.hdel(self.key(generation), *clears)
        if sets:
            pipe.hset(self.key(generation), mapping=sets)  # type: ignore[arg-type]
        pipe.execute()
        return n

    def begin_build(self, generation: int, started: datetime) -> None:
        """Start filling ``generation`` from nothing; suppressions after ``started`` are read
        again by the incremental refresh that completes it."""
        self.redis.delete(self.key(generation))
        mapping: dict[str | bytes, str | int | float] = {
            "building": generation, "started": started.isoformat(),
            **{f"cursor:{k}": "" for k in KINDS}}
        self.redis.hset(self.meta_key, mapping=mapping)  # type: ignore[arg-type]  # redis-py Mapping is invariant

    def save_cursor(self, kind: str, cursor: str | None) -> None:
        """Where the fill being built goes on reading ``kind`` (None: all pages read)."""
        self.redis.hset(self.meta_key, f"cursor:{kind}", cursor or DONE)

    def switch(self, generation: int, since: Mapping[str, datetime],
               now: float | None = None) -> None:
        """Put a completed generation in force and drop the one before it."""
        now = time.time() if now is None else now
        before = self.redis.hget(self.meta_key, "gen")
        pipe = self.redis.pipeline(transaction=True)
        mapping: dict[str | bytes, str | int | float] = {
            "gen": generation, "filled_at": now, "refreshed_at": now,
            **{f"since:{k}": t.isoformat() for k, t in since.items()}}
        pipe.hset(self.meta_key, mapping=mapping)  # type: ignore[arg-type]
        pipe.hdel(self.meta_key, "building", "started", *(f"cursor:{k}" for k in KINDS))
        if before and int(before) != generation:
            pipe.unlink(self.key(int(before)))
        pipe.execute()

    def refreshed(self, since: Mapping[str, datetime], now: float | None = None) -> None:
        """An incremental refresh read everything; the next one starts at ``since``."""
        now = time.time() if now is None else now
        self.redis.hset(self.meta_key, mapping={
            "refreshed_at": now, **{f"since:{k}": t.isoformat() for k, t in since.items()}})


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
