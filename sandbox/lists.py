"""A Klaviyo list: ordered membership for cursor paging, plus pending double opt-ins.

Members live in a dict (profile id → (sequence, joined_group_at)) for O(1) adds,
removes and look-ups. Order is kept in two append-only arrays (sequence, profile
id); a removed or re-added member leaves a stale entry behind that paging skips,
and the arrays are compacted once stale entries outnumber live ones. A cursor is
a sequence number, so compaction never invalidates one.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable
from typing import Any

COMPACT_MIN = 1024


class ListRec:
    """One list of one account."""

    __slots__ = ("created", "flows", "id", "members", "name", "opt_in", "pending", "pids",
                 "seqs", "stale", "updated")

    def __init__(self, list_id: str, name: str, opt_in: str, now: str) -> None:
        self.id = list_id
        self.name = name
        self.opt_in = opt_in
        self.created = now
        self.updated = now
        self.members: dict[str, tuple[int, str]] = {}
        self.pending: dict[str, str] = {}  # profile id → when the opt-in was requested
        self.flows: list[dict[str, Any]] = []  # flows "Added to List" of this list triggers
        self.seqs: list[int] = []
        self.pids: list[str] = []
        self.stale = 0

    @property
    def double_opt_in(self) -> bool:
        """True when subscribing leaves profiles pending until they confirm."""
        return self.opt_in == "double_opt_in"

    def add(self, pid: str, seq: int, now: str) -> bool:
        """Make ``pid`` a member (a member keeps its join time); False if it already was."""
        self.pending.pop(pid, None)
        if pid in self.members:
            return False
        self.members[pid] = (seq, now)
        self.seqs.append(seq)
        self.pids.append(pid)
        return True

    def remove(self, pid: str, *, keep_pending: bool = False) -> bool:
        """Drop ``pid`` (member or pending); False if it was neither. ``keep_pending``: a
        confirmation on its way stays (removing from a list cannot cancel one)."""
        was_pending = (not keep_pending) and self.pending.pop(pid, None) is not None
        if self.members.pop(pid, None) is None:
            return was_pending
        self.stale += 1
        if self.stale > COMPACT_MIN and self.stale * 2 > len(self.seqs):
            self._compact()
        return True

    def _compact(self) -> None:
        live = [(s, p) for s, p in zip(self.seqs, self.pids, strict=True)
                if self.members.get(p, (None,))[0] == s]
        self.seqs = [s for s, _ in live]
        self.pids = [p for _, p in live]
        self.stale = 0

    def page(self, cursor: int | None, size: int, reverse: bool = False,
             keep: Callable[[str], bool] | None = None,
             ) -> tuple[list[tuple[str, str]], int | None]:
        """Up to ``size`` (profile id, joined_group_at) after ``cursor``, and the next cursor;
        ``keep`` (given a joined_group_at) leaves out members it refuses."""
        step = -1 if reverse else 1
        if cursor is None:
            i = len(self.seqs) - 1 if reverse else 0
        else:
            i = bisect_left(self.seqs, cursor) - 1 if reverse else bisect_right(self.seqs, cursor)
        out: list[tuple[str, str]] = []
        last = None
        while 0 <= i < len(self.seqs):
            seq, pid = self.seqs[i], self.pids[i]
            entry = self.members.get(pid)
            if entry is not None and entry[0] == seq and (keep is None or keep(entry[1])):
                if len(out) == size:
                    return out, last
                out.append((pid, entry[1]))
                last = seq
            i += step
        return out, None

    def resource(self, base: str, *, profile_count: bool = False) -> dict[str, Any]:
        """The JSON:API resource object for this list."""
        attributes: dict[str, Any] = {"name": self.name, "created": self.created,
                                      "updated": self.updated, "opt_in_process": self.opt_in}
        if profile_count:
            attributes["profile_count"] = len(self.members)
        url = f"{base}/api/lists/{self.id}"
        links = {"self": f"{url}/relationships/profiles", "related": f"{url}/profiles"}
        return {"type": "list", "id": self.id, "attributes": attributes,
                "relationships": {"profiles": {"links": links}}, "links": {"self": url}}
