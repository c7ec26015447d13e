"""Call counters for ``GET /_sandbox/stats``: per operation and per account."""

from __future__ import annotations

from typing import Any


def _blank() -> dict[str, Any]:
    return {"calls": 0, "items": 0, "throttled": 0, "statuses": {}}


def _bump(row: dict[str, Any], status: int, items: int) -> None:
    row["calls"] += 1
    row["items"] += items
    if status == 429:
        row["throttled"] += 1
    key = str(status) if status else "dropped"
    row["statuses"][key] = row["statuses"].get(key, 0) + 1


class Stats:
    """Counts every answered call; the sandbox lock guards it."""

    def __init__(self) -> None:
        self.total = _blank()
        self.operations: dict[str, dict[str, Any]] = {}
        self.accounts: dict[str, dict[str, dict[str, Any]]] = {}

    def record(self, op: str, account: str, status: int, items: int) -> None:
        """One call: ``items`` counts profiles or ids sent (writes) or returned (reads)."""
        _bump(self.total, status, items)
        _bump(self.operations.setdefault(op, _blank()), status, items)
        per_account = self.accounts.setdefault(account, {})
        _bump(per_account.setdefault(op, _blank()), status, items)

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        def copy(row: dict[str, Any]) -> dict[str, Any]:
            return {**row, "statuses": dict(row["statuses"])}

        return {"total": copy(self.total),
                "operations": {op: copy(row) for op, row in self.operations.items()},
                "accounts": {acct: {"operations": {op: copy(r) for op, r in ops.items()},
                                    "calls": sum(r["calls"] for r in ops.values()),
                                    "throttled": sum(r["throttled"] for r in ops.values())}
                             for acct, ops in self.accounts.items()}}
