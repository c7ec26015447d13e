"""The query side of Klaviyo's JSON:API: cursor pagination and filter-string quoting.

Collections answer with ``links.next``, a full URL carrying ``page[cursor]``. We take
only the cursor from it and call the same operation again through the client, so
every page goes to the configured base URL with the same headers, caps and errors.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

from contract.operations import Operation
from worker.klaviyo.client import KlaviyoClient
from worker.klaviyo.errors import TransientError

CURSOR = "page[cursor]"
SIZE = "page[size]"


def quote_filter_value(value: str) -> str:
    """``value`` as a double-quoted filter string: ``\\`` and ``"`` escaped by a backslash."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def next_cursor(op: Operation, document: dict[str, Any]) -> str | None:
    """The ``page[cursor]`` of ``links.next``; None on the last page."""
    links = document.get("links")
    next_url = links.get("next") if isinstance(links, dict) else None
    if not next_url:
        return None
    for pair in urlsplit(str(next_url)).query.split("&"):
        key, _, value = pair.partition("=")
        # unquote, not unquote_plus: a raw "+" in a base64 cursor is not a space.
        if unquote(key) == CURSOR and value:
            return unquote(value)
    raise TransientError(f"{op.name}: links.next has no {CURSOR}")


def iter_pages(
    client: KlaviyoClient,
    op: Operation,
    *,
    path: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> Iterator[dict[str, Any]]:
    """Every page of ``op``'s collection as a JSON:API document, first to last."""
    query = dict(params or {})
    seen: set[str] = set()
    while True:
        document = client.call(op, path=path, params=query).document or {}
        yield document
        cursor = next_cursor(op, document)
        if cursor is None:
            return
        if cursor in seen:
            raise TransientError(f"{op.name}: links.next repeats an earlier cursor")
        seen.add(cursor)
        query[CURSOR] = cursor


def iter_resources(
    client: KlaviyoClient,
    op: Operation,
    *,
    path: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> Iterator[dict[str, Any]]:
    """Every resource object (``data[]`` item) of every page of ``op``'s collection."""
    for document in iter_pages(client, op, path=path, params=params):
        data = document.get("data")
        if isinstance(data, list):
            yield from (item for item in data if isinstance(item, dict))


def page_size(op: Operation, largest: int = 100) -> str:
    """The largest page ``op`` allows (its ``max_items``, at most ``largest``), as a param."""
    return str(min(op.max_items or largest, largest))
