"""Klaviyo lists: find, read and create them; add, remove and read their members.

Adding and removing take profile **ids** (at most 1,000 per call) and leave consent
untouched; use :mod:`worker.klaviyo.subscriptions` to subscribe.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from contract import operations as ops
from worker.klaviyo.client import KlaviyoClient
from worker.klaviyo.pagination import (
    CURSOR,
    SIZE,
    iter_pages,
    iter_resources,
    next_cursor,
    page_size,
    quote_filter_value,
)

OPT_IN_PROCESSES = frozenset({"single_opt_in", "double_opt_in"})


@dataclass(frozen=True)
class KlaviyoList:
    """A list as Klaviyo describes it."""

    id: str
    name: str
    opt_in_process: str | None

    @classmethod
    def from_resource(cls, resource: dict[str, Any]) -> KlaviyoList:
        """Build from a JSON:API ``list`` resource object."""
        attributes = resource.get("attributes") or {}
        return cls(
            id=str(resource["id"]),
            name=str(attributes.get("name") or ""),
            opt_in_process=attributes.get("opt_in_process"),
        )


def find_list_by_name(client: KlaviyoClient, name: str) -> KlaviyoList | None:
    """The list whose name is exactly ``name``, or None; pages through every match."""
    params = {"filter": f"equals(name,{quote_filter_value(name)})", SIZE: page_size(ops.GET_LISTS)}
    for resource in iter_resources(client, ops.GET_LISTS, params=params):
        found = KlaviyoList.from_resource(resource)
        if found.name == name:
            return found
    return None


def get_list(client: KlaviyoClient, list_id: str) -> KlaviyoList:
    """The list ``list_id``; raises NotFound when it does not exist."""
    document = client.call(ops.GET_LIST, path={"id": list_id}).document or {}
    return KlaviyoList.from_resource(document["data"])


def create_list_body(name: str, opt_in_process: str | None = None) -> dict[str, Any]:
    """The ``create_list`` request body; ``opt_in_process`` omitted uses the account default."""
    if opt_in_process is not None and opt_in_process not in OPT_IN_PROCESSES:
        raise ValueError(f"opt_in_process must be one of {sorted(OPT_IN_PROCESSES)}")
    attributes: dict[str, Any] = {"name": name}
    if opt_in_process is not None:
        attributes["opt_in_process"] = opt_in_process
    return {"data": {"type": "list", "attributes": attributes}}


def create_list(
    client: KlaviyoClient, name: str, opt_in_process: str | None = None
) -> KlaviyoList:
    """Create a list (at most 150 a day per account) and return it."""
    body = create_list_body(name, opt_in_process)
    document = client.call(ops.CREATE_LIST, body=body).document or {}
    return KlaviyoList.from_resource(document["data"])


def members_body(profile_ids: Sequence[str]) -> dict[str, Any]:
    """The body naming ``profile_ids`` for adding to or removing from a list."""
    return {"data": [{"type": "profile", "id": profile_id} for profile_id in profile_ids]}


def add_profiles_to_list(client: KlaviyoClient, list_id: str, profile_ids: Sequence[str]) -> None:
    """Add profiles to a list without changing consent (≤1,000 ids; none sends nothing)."""
    if profile_ids:
        client.call(ops.ADD_PROFILES_TO_LIST, path={"id": list_id}, body=members_body(profile_ids))


def remove_profiles_from_list(
    client: KlaviyoClient, list_id: str, profile_ids: Sequence[str]
) -> None:
    """Remove profiles from a list, consent untouched (≤1,000 ids; none sends nothing)."""
    if profile_ids:
        client.call(
            ops.REMOVE_PROFILES_FROM_LIST, path={"id": list_id}, body=members_body(profile_ids)
        )


def iter_list_profile_ids(client: KlaviyoClient, list_id: str) -> Iterator[str]:
    """The id of every member of ``list_id``, page by page."""
    op = ops.GET_LIST_PROFILE_IDS
    params = {SIZE: page_size(op)}
    for resource in iter_resources(client, op, path={"id": list_id}, params=params):
        yield str(resource["id"])


def iter_list_profiles(client: KlaviyoClient, list_id: str) -> Iterator[tuple[str, str | None]]:
    """``(id, email)`` of every member of ``list_id``; email is None for phone-only profiles."""
    op = ops.GET_LIST_PROFILES
    params = {SIZE: page_size(op), "fields[profile]": "email"}
    for resource in iter_resources(client, op, path={"id": list_id}, params=params):
        yield str(resource["id"]), (resource.get("attributes") or {}).get("email")


@dataclass(frozen=True)
class ListMember:
    """A member as the list shows it: when they joined (for a double opt-in list, when they
    confirmed)."""

    id: str
    email: str | None  # None for a phone-only profile
    joined_group_at: datetime | None

    @classmethod
    def from_resource(cls, resource: dict[str, Any]) -> ListMember:
        """Build from a ``profile`` resource of ``get_profiles_for_list``."""
        attributes = resource.get("attributes") or {}
        joined = attributes.get("joined_group_at")
        return cls(id=str(resource["id"]), email=_lower(attributes.get("email")),
                   joined_group_at=parse_time(joined) if joined else None)


def parse_time(text: str) -> datetime:
    """A Klaviyo date-time (ISO 8601, ``Z`` or an offset) as an aware UTC datetime."""
    moment = datetime.fromisoformat(text)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def filter_time(moment: datetime) -> str:
    """``moment`` as a filter value: UTC, whole seconds rounded down, ``Z`` (Klaviyo's examples)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def list_members_since(
    client: KlaviyoClient, list_id: str, since: datetime | None = None
) -> Iterator[list[ListMember]]:
    """The members of ``list_id`` who joined at or after ``since`` (every member: None), oldest
    join first, one page (at most 100) per call; the caller may stop between pages.

    ``joined_group_at`` filters and sorts as the spec allows (``greater-or-equal``; sort
    ``joined_group_at``); ``since`` is sent to the second, rounded down, so a page may repeat
    members from just before it: callers are idempotent.
    """
    op = ops.GET_LIST_PROFILES
    params = {SIZE: page_size(op), "fields[profile]": "email,joined_group_at",
              "sort": "joined_group_at"}
    if since is not None:
        params["filter"] = f"greater-or-equal(joined_group_at,{filter_time(since)})"
    for document in iter_pages(client, op, path={"id": list_id}, params=params):
        data = document.get("data")
        items = data if isinstance(data, list) else []
        yield [ListMember.from_resource(item) for item in items if isinstance(item, dict)]


def list_members_page(
    client: KlaviyoClient, list_id: str, cursor: str | None = None
) -> tuple[list[ListMember], str | None]:
    """One page (100) of ``list_id``'s members with ids, emails and join times, and the next
    page's cursor (None on the last page). One call, so a caller that is throttled or meets a
    passing error can ask for the same page again: the audit reads a whole list so."""
    op = ops.GET_LIST_PROFILES
    params = {SIZE: page_size(op), "fields[profile]": "email,joined_group_at"}
    if cursor is not None:
        params[CURSOR] = cursor
    document = client.call(op, path={"id": list_id}, params=params).document or {}
    members = [
        ListMember.from_resource(item) for item in document.get("data") or ()
        if isinstance(item, dict)
    ]
    return members, next_cursor(op, document)


def _lower(email: object) -> str | None:
    return email.strip().lower() if isinstance(email, str) and email.strip() else None


def list_profile_count(client: KlaviyoClient, list_id: str) -> int | None:
    """How many members ``list_id`` has (``additional-fields[list]=profile_count``)."""
    params = {"additional-fields[list]": "profile_count"}
    document = client.call(ops.GET_LIST, path={"id": list_id}, params=params).document or {}
    count = ((document.get("data") or {}).get("attributes") or {}).get("profile_count")
    return int(count) if isinstance(count, int) else None


def find_member(client: KlaviyoClient, list_id: str, email: str) -> ListMember | None:
    """``email``'s membership of ``list_id`` read live (``filter=equals(email,…)``), or None."""
    op = ops.GET_LIST_PROFILES
    params = {"filter": f"equals(email,{quote_filter_value(email)})",
              "fields[profile]": "email,joined_group_at"}
    document = client.call(op, path={"id": list_id}, params=params).document or {}
    for item in document.get("data") or ():
        return ListMember.from_resource(item)
    return None


def flows_triggered_by_list(client: KlaviyoClient, list_id: str) -> list[dict[str, Any]]:
    """The flows adding people to ``list_id`` triggers: ``id``, ``name``, ``status`` each."""
    document = client.call(ops.GET_LIST_FLOW_TRIGGERS, path={"id": list_id}).document or {}
    return [{"id": str(item.get("id")), "name": (item.get("attributes") or {}).get("name"),
             "status": (item.get("attributes") or {}).get("status")}
            for item in document.get("data") or () if isinstance(item, dict)]
