"""Batch caps, checked before a request is sent: items, bytes and page size per operation.

The caps themselves are data in ``contract.operations`` (the shared contract); the
client refuses a call over them with :class:`BatchTooLarge` and sends nothing.
"""

from __future__ import annotations

from typing import Any

import orjson

from contract.operations import PROFILE_MAX_BYTES, Operation
from worker.klaviyo.errors import BatchTooLarge


def batch_items(body: dict[str, Any]) -> list[Any]:
    """The batch in a body: ``data[]``, or ``data.attributes.profiles.data[]``, or one item."""
    data = body.get("data")
    if isinstance(data, list):
        return data
    attributes = data.get("attributes") if isinstance(data, dict) else None
    profiles = attributes.get("profiles") if isinstance(attributes, dict) else None
    nested = profiles.get("data") if isinstance(profiles, dict) else None
    return nested if isinstance(nested, list) else [data]


def check_caps(
    op: Operation, body: dict[str, Any] | None, data: bytes | None, params: dict[str, str] | None
) -> None:
    """Raise BatchTooLarge for a call over ``op``'s item, byte or page-size cap."""
    page_size = int((params or {}).get("page[size]", 0))
    if op.max_items is not None and page_size > op.max_items:
        raise BatchTooLarge(f"{op.name}: page size {page_size} is over the cap of {op.max_items}")
    if body is None or data is None:
        return
    items = batch_items(body)
    if op.max_items is not None and len(items) > op.max_items:
        raise BatchTooLarge(
            f"{op.name}: {len(items):,} items in one call; the cap is {op.max_items:,}"
        )
    if op.max_bytes is not None and len(data) > op.max_bytes:
        raise BatchTooLarge(f"{op.name}: body is {len(data):,} bytes; the cap is {op.max_bytes:,}")
    if len(data) > PROFILE_MAX_BYTES:  # only then can a single item be over the cap
        _check_item_sizes(op, items)


def _check_item_sizes(op: Operation, items: list[Any]) -> None:
    for index, item in enumerate(items):
        size = len(orjson.dumps(item))
        if size > PROFILE_MAX_BYTES:
            raise BatchTooLarge(
                f"{op.name}: item {index} is {size:,} bytes; "
                f"the cap is {PROFILE_MAX_BYTES:,} bytes per profile"
            )
