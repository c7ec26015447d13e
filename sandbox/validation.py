"""The sandbox's door to Klaviyo's OpenAPI contract (``contract.spec``).

Requests are checked with the same compiled schemas the client uses; a violation
becomes Klaviyo's 400 with a ``source.pointer``. Caps (items, bytes, page sizes)
come from the operation table and are checked here too, before the schema, so an
oversized batch is refused cheaply and by name.
"""

from __future__ import annotations

from typing import Any

import orjson

from contract import spec
from contract.operations import PROFILE_MAX_BYTES, Operation
from sandbox.errors import invalid

# Where each batch operation keeps its items, as a JSON pointer.
BATCH_POINTERS = {
    "bulk_subscribe_profiles": "/data/attributes/profiles/data",
    "bulk_import_profiles": "/data/attributes/profiles/data",
    "bulk_unsubscribe_profiles": "/data/attributes/profiles/data",
    "add_profiles_to_list": "/data",
    "remove_profiles_from_list": "/data",
}


def check_request(op: Operation, body: Any) -> None:
    """Raise a 400 ApiError unless Klaviyo's schema accepts ``body``."""
    try:
        spec.validate_request(op, body)
    except spec.SpecViolation as exc:
        raise invalid(exc.message, pointer=exc.pointer or "/data") from None


def check_response(op: Operation, status: int, document: Any) -> None:
    """Raise ``spec.SpecViolation`` unless ``document`` is what ``op`` documents (tests)."""
    spec.validate_response(op, status, document)


def check_body_size(op: Operation, size: int) -> None:
    """The byte cap of the whole request body."""
    if op.max_bytes is not None and size > op.max_bytes:
        raise invalid(f"Request body is {size:,} bytes; {op.name} accepts at most "
                      f"{op.max_bytes:,} bytes.", pointer="/data")


def batch_of(op: Operation, body: Any) -> list[Any] | None:
    """The item list of a batch operation, or None when the body has none (yet)."""
    pointer = BATCH_POINTERS.get(op.name)
    if pointer is None:
        return None
    node = body
    for part in pointer.strip("/").split("/"):
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, list) else None


def check_batch(op: Operation, items: list[Any], raw_size: int) -> None:
    """Item cap per call and, for profile batches, the 100 KB cap per profile."""
    pointer = BATCH_POINTERS[op.name]
    if op.max_items is not None and len(items) > op.max_items:
        raise invalid(f"{len(items):,} items in one {op.name} call; the cap is "
                      f"{op.max_items:,} per call.", pointer=pointer)
    if op.name == "bulk_import_profiles" and raw_size > PROFILE_MAX_BYTES:
        _check_profile_sizes(items, pointer)


def _check_profile_sizes(items: list[Any], pointer: str) -> None:
    for index, item in enumerate(items):
        size = len(orjson.dumps(item))
        if size > PROFILE_MAX_BYTES:
            raise invalid(f"Profile {index} is {size:,} bytes; the cap is "
                          f"{PROFILE_MAX_BYTES:,} bytes per profile.", pointer=f"{pointer}/{index}")


def page_size(op: Operation, raw: str | None, default: int) -> int:
    """``page[size]`` checked against the operation's page-size maximum."""
    if raw is None:
        return default
    maximum = op.max_items or 100
    try:
        size = int(raw)
    except ValueError:
        raise invalid(f"page[size] must be an integer, not {raw!r}.",
                      parameter="page[size]") from None
    if not 1 <= size <= maximum:
        raise invalid(f"page[size] must be between 1 and {maximum} for {op.name}; got {size}.",
                      parameter="page[size]")
    return size
