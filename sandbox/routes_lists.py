"""Lists: create, read, find by name, members (cursor paging), force add and remove."""

from __future__ import annotations

import operator
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sandbox import errors, paging
from sandbox.clock import iso
from sandbox.filters import COMPARISONS, MEMBERSHIP, Condition, parse_filter
from sandbox.lists import ListRec
from sandbox.pipeline import Ctx, Handler, Reply
from sandbox.profiles import profile_resource
from sandbox.validation import page_size

LIST_FILTER_FIELDS = {"id", "name"}
# the spec's filters on list members: identifiers, and the time each member joined
JOINED = "joined_group_at"
MEMBER_FILTER_FIELDS = {"email": MEMBERSHIP, "phone_number": MEMBERSHIP, JOINED: COMPARISONS}
_COMPARE: dict[str, Callable[[datetime, datetime], bool]] = {
    "greater-than": operator.gt, "greater-or-equal": operator.ge,
    "less-than": operator.lt, "less-or-equal": operator.le}


def create_list(ctx: Ctx) -> Reply:
    """``POST /api/lists``: 201 with the new list; without ``opt_in_process`` the account
    default applies, which is double opt-in on a real account. An account without single
    opt-in enabled (``single_opt_in_enabled`` off) creates a single opt-in request double."""
    attributes = ctx.body["data"]["attributes"]
    realism = ctx.sandbox.realism
    opt_in = attributes.get("opt_in_process") or realism.default_opt_in
    if opt_in == "single_opt_in" and not realism.single_opt_in_enabled:
        opt_in = "double_opt_in"
    lst = ctx.sandbox.new_list(ctx.account, attributes["name"], opt_in)
    return Reply(201, {"data": lst.resource(ctx.base), "links": {"self": f"{ctx.base}/api/lists"}},
                 items=1)


def get_lists(ctx: Ctx) -> Reply:
    """``GET /api/lists`` with ``filter=equals(name,"…")`` / ``any(id,[…])``, 10 a page."""
    conditions = parse_filter(ctx.query("filter"), LIST_FILTER_FIELDS)
    size = page_size(ctx.op, ctx.query("page[size]"), 10)
    found = [lst for lst in ctx.account.lists.values()
             if all(_list_field(lst, c.field) in c.values for c in conditions)]
    page, cursor = paging.offset_page(ctx.request, found, size)
    data = [lst.resource(ctx.base) for lst in page]
    return Reply(200, paging.collection(ctx.request, data, cursor), items=len(data))


def _list_field(lst: ListRec, name: str) -> str:
    return lst.id if name == "id" else lst.name


def get_list(ctx: Ctx) -> Reply:
    """``GET /api/lists/{id}``; ``additional-fields[list]=profile_count`` adds the count."""
    lst = _list(ctx)
    counted = ctx.wants("additional-fields[list]", "profile_count")
    doc = {"data": lst.resource(ctx.base, profile_count=counted),
           "links": {"self": f"{ctx.base}/api/lists/{lst.id}"}}
    return Reply(200, doc, items=1)


def _list(ctx: Ctx) -> ListRec:
    lst = ctx.account.lists.get(ctx.path("id"))
    if lst is None:
        raise errors.not_found(f"List {ctx.path('id')} does not exist.")
    return lst


def _members(ctx: Ctx, lst: ListRec, size: int) -> tuple[list[tuple[str, str]], str | None]:
    """(profile id, joined_group_at) for one page, and the next cursor."""
    conditions = parse_filter(ctx.query("filter"), MEMBER_FILTER_FIELDS)
    sort = ctx.query("sort") or "joined_group_at"
    if sort not in ("joined_group_at", "-joined_group_at"):
        raise errors.invalid(f"Cannot sort by {sort!r}.", parameter="sort")
    keep = _joined_test([c for c in conditions if c.field == JOINED])
    identities = [c for c in conditions if c.field != JOINED]
    if identities:
        found = [m for m in _filtered(ctx, lst, identities) if keep is None or keep(m[1])]
        return paging.offset_page(ctx.request, found, size)
    page, last = lst.page(paging.decode(ctx.request, "s"), size, reverse=sort.startswith("-"),
                          keep=keep)
    return page, (paging.encode("s", last) if last is not None else None)


def _joined_test(conditions: list[Condition]) -> Callable[[str], bool] | None:
    """A test of a member's ``joined_group_at`` against every comparison; None: no test."""
    if not conditions:
        return None
    bounds = [(_COMPARE[c.op], _moment(c.values[0])) for c in conditions]
    return lambda joined: all(compare(_moment(joined), bound) for compare, bound in bounds)


def _moment(text: str) -> datetime:
    """An ISO 8601 date or date-time; one without an offset is UTC."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise errors.invalid(f"Invalid filter: {text!r} is not a date-time.",
                             parameter="filter") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _filtered(ctx: Ctx, lst: ListRec, conditions: list[Any]) -> list[tuple[str, str]]:
    chosen: dict[str, tuple[int, str]] = {}
    for condition in conditions:
        for value in condition.values:
            profile = ctx.account.lookup(condition.field, value)
            if profile is not None and profile.id in lst.members:
                chosen[profile.id] = lst.members[profile.id]
    ordered = sorted(chosen.items(), key=lambda item: item[1][0])
    return [(pid, joined) for pid, (_, joined) in ordered]


def get_profiles_for_list(ctx: Ctx) -> Reply:
    """``GET /api/lists/{id}/profiles``: member profiles with ``joined_group_at``."""
    lst = _list(ctx)
    page, cursor = _members(ctx, lst, page_size(ctx.op, ctx.query("page[size]"), 20))
    subs = ctx.wants("additional-fields[profile]", "subscriptions")
    profiles = ctx.account.profiles
    data = [profile_resource(profiles[pid], ctx.base, with_subscriptions=subs, joined=joined)
            for pid, joined in page]
    return Reply(200, paging.collection(ctx.request, data, cursor), items=len(data))


def get_profile_ids_for_list(ctx: Ctx) -> Reply:
    """``GET /api/lists/{id}/relationships/profiles``: member ids."""
    lst = _list(ctx)
    page, cursor = _members(ctx, lst, page_size(ctx.op, ctx.query("page[size]"), 20))
    data = [{"type": "profile", "id": pid} for pid, _ in page]
    return Reply(200, paging.collection(ctx.request, data, cursor), items=len(data))


def add_profiles_to_list(ctx: Ctx) -> Reply:
    """Force add (no consent change); every id must be a profile of this account."""
    lst = _list(ctx)
    ids = [item["id"] for item in ctx.body["data"]]
    unknown = [(i, pid) for i, pid in enumerate(ids) if pid not in ctx.account.profiles]
    if unknown:
        raise errors.ApiError(400, [
            errors.problem(400, "invalid", "Invalid input.", f"Profile {pid} does not exist.",
                           pointer=f"/data/{i}/id") for i, pid in unknown[:100]])
    now = iso()
    for pid in ids:
        lst.add(pid, ctx.account.next_seq(), now)
    return Reply(204, items=len(ids))


def remove_profiles_from_list(ctx: Ctx) -> Reply:
    """Remove members (consent untouched); ids that are not members are ignored. A pending
    double opt-in stays pending: Klaviyo has no way to cancel a confirmation email already
    sent, so the person joins when they click (klaviyo-behaviour.md)."""
    lst = _list(ctx)
    ids = [item["id"] for item in ctx.body["data"]]
    for pid in ids:
        lst.remove(pid, keep_pending=True)
    return Reply(204, items=len(ids))


def get_flows_triggered_by_list(ctx: Ctx) -> Reply:
    """``GET /api/lists/{id}/flow-triggers``: the flows adding people to this list triggers
    (made with ``POST /_sandbox/lists/{id}/flows``; a new list triggers none). No paging: the
    spec gives the operation none."""
    lst = _list(ctx)
    data = [{"type": "flow", "id": flow["id"], "attributes": {
                 "name": flow["name"], "status": flow["status"], "archived": False,
                 "created": flow["created"], "updated": flow["created"],
                 "trigger_type": "Added to List"},
             "links": {"self": f"{ctx.base}/api/flows/{flow['id']}"}} for flow in lst.flows]
    links = {"self": f"{ctx.base}/api/lists/{lst.id}/flow-triggers"}
    return Reply(200, {"data": data, "links": links}, items=len(data))


HANDLERS: dict[str, Handler] = {
    "create_list": create_list, "get_lists": get_lists, "get_list": get_list,
    "get_profiles_for_list": get_profiles_for_list,
    "get_profile_ids_for_list": get_profile_ids_for_list,
    "add_profiles_to_list": add_profiles_to_list,
    "remove_profiles_from_list": remove_profiles_from_list,
    "get_flows_triggered_by_list": get_flows_triggered_by_list,
}
