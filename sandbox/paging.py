"""Cursor paging as Klaviyo does it: opaque ``page[cursor]`` and absolute ``links``."""

from __future__ import annotations

import base64
from typing import Any

from starlette.requests import Request

from sandbox.errors import invalid

CURSOR = "page[cursor]"


def encode(kind: str, number: int) -> str:
    """An opaque cursor: ``kind`` says what ``number`` counts (sequence or offset)."""
    return base64.urlsafe_b64encode(f"{kind}:{number}".encode()).decode().rstrip("=")


def decode(request: Request, kind: str) -> int | None:
    """The number in this request's cursor of ``kind``; None without a cursor."""
    raw = request.query_params.get(CURSOR)
    if not raw:
        return None
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        got, _, number = text.partition(":")
        if got == kind:
            return int(number)
    except ValueError:
        pass
    raise invalid("Invalid page cursor.", parameter=CURSOR)


def collection(request: Request, data: list[dict[str, Any]], next_cursor: str | None,
               **extra: Any) -> dict[str, Any]:
    """A collection document whose ``links.next`` carries the next cursor."""
    links: dict[str, str] = {"self": str(request.url)}
    if next_cursor is not None:
        links["next"] = str(request.url.include_query_params(**{CURSOR: next_cursor}))
    return {"data": data, "links": links, **extra}


def offset_page(request: Request, items: list[Any], size: int) -> tuple[list[Any], str | None]:
    """Page over a computed list with an offset cursor."""
    start = decode(request, "o") or 0
    page = items[start:start + size]
    following = start + len(page)
    return page, (encode("o", following) if following < len(items) else None)
