"""Lytics' segment scan API (``GET /api/segment/{id}/scan``), served by the sandbox.

Members come from ``<segment>.jsonl`` files in ``--lytics-members DIR`` and from
``POST /_sandbox/lytics/segments/{id}``. Auth is ``Authorization: <token>`` (no
"Bearer"; ``?access_token=`` also works): any non-empty token, or exactly the one
given with ``--lytics-token``. Pages hold ``limit`` (≤ 100, default 10) members and
``_next`` is the ``start`` of the following page; the last page has ``_next: ""``.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import orjson

MAX_LIMIT = 100
DEFAULT_LIMIT = 10


class ScanError(Exception):
    """An error answer in Lytics' shape: ``{"status", "message"}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message


def parse_members(raw: bytes) -> list[dict[str, Any]]:
    """A JSON array of profiles, or JSON lines (one profile per line)."""
    text = raw.strip()
    members: list[Any]
    if text.startswith(b"["):
        members = orjson.loads(text)
    else:
        members = [orjson.loads(line) for line in text.splitlines() if line.strip()]
    if not all(isinstance(m, dict) for m in members):
        raise ValueError("every member must be a JSON object")
    return [dict(m) for m in members]


class LyticsStore:
    """Segments and their members, in order."""

    def __init__(self, directory: Path | None = None, token: str | None = None) -> None:
        self.directory = directory
        self.token = token
        self.segments: dict[str, list[dict[str, Any]]] = {}
        self.reload()

    def reload(self) -> None:
        """Back to what the members directory holds."""
        self.segments = {}
        if self.directory is not None:
            for path in sorted(self.directory.glob("*.jsonl")):
                self.put(path.stem, parse_members(path.read_bytes()))

    def put(self, segment: str, members: list[dict[str, Any]]) -> None:
        """Replace a segment's members; each gets ``segments`` when it has none."""
        self.segments[segment] = [m if "segments" in m else {**m, "segments": [segment]}
                                  for m in members]

    def authorize(self, header: str | None, query_token: str | None) -> None:
        """Raise ScanError(401) unless the token is acceptable."""
        token = (header or query_token or "").strip()
        if not token or token.lower().startswith("bearer "):
            raise ScanError(401, "Unauthorized: send the API token as is, without 'Bearer'")
        if self.token is not None and token != self.token:
            raise ScanError(401, "Unauthorized: invalid API token")

    def scan(self, segment: str, limit_raw: str | None, start: str | None,
             fields_raw: str | None) -> dict[str, Any]:
        """One page of a scan."""
        members = self.segments.get(segment)
        if members is None:
            raise ScanError(404, f"segment {segment!r} not found")
        limit = _limit(limit_raw)
        offset = _decode(segment, start) if start else 0
        page = members[offset:offset + limit]
        if fields_raw:
            fields = [f.strip() for f in fields_raw.split(",") if f.strip()]
            page = [{f: m[f] for f in fields if f in m} for m in page]
        following = offset + len(page)
        token = _encode(segment, following) if following < len(members) else ""
        return {"status": 200, "message": "success", "_next": token, "total": len(members),
                "data": page}


def _limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        raise ScanError(400, f"limit must be an integer, not {raw!r}") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise ScanError(400, f"limit must be between 1 and {MAX_LIMIT}")
    return limit


def _encode(segment: str, offset: int) -> str:
    return base64.urlsafe_b64encode(f"{segment}\x00{offset}".encode()).decode().rstrip("=")


def _decode(segment: str, token: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        name, _, offset = raw.partition("\x00")
        if name == segment:
            return int(offset)
    except ValueError:
        pass
    raise ScanError(400, "start is not a scan token of this segment")
