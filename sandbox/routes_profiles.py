"""The account, profile look-ups (``filter=any(email,[…])``, suppression filters) and
profile-import upserts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sandbox import errors, paging
from sandbox.clock import iso
from sandbox.filters import COMPARISONS, MEMBERSHIP, Condition, parse_filter
from sandbox.pipeline import Ctx, Handler, Reply
from sandbox.profiles import Profile, profile_resource
from sandbox.upsert import ProfileProblem, upsert
from sandbox.validation import page_size

IDENTITY_FIELDS = ("id", "email", "phone_number", "external_id")
_MARKETING = "subscriptions.email.marketing."
_EQUALS = frozenset({"equals"})
# The suppression filters get_profiles' filter description lists.
SUPPRESSION_FIELDS = {
    f"{_MARKETING}suppression.reason": _EQUALS,
    f"{_MARKETING}suppression.timestamp": COMPARISONS,
    f"{_MARKETING}list_suppressions.reason": _EQUALS,
    f"{_MARKETING}list_suppressions.list_id": _EQUALS,
    f"{_MARKETING}list_suppressions.timestamp": COMPARISONS,
}
PROFILE_FILTER_FIELDS = {**dict.fromkeys(IDENTITY_FIELDS, MEMBERSHIP), **SUPPRESSION_FIELDS}
_TITLES = {400: "Invalid input.", 404: "Not found.", 409: "Conflict."}


def get_accounts(ctx: Ctx) -> Reply:
    """``GET /api/accounts``: the key's one account."""
    fp = ctx.account.fingerprint
    account = {
        "type": "account", "id": fp[:6].upper(),
        "attributes": {
            "test_account": True, "timezone": "UTC", "preferred_currency": "USD",
            "public_api_key": fp[6:12].upper(), "locale": "en-US", "industry": None,
            "contact_information": {
                "default_sender_name": "Sandbox", "default_sender_email": "sandbox@example.com",
                "organization_name": f"Sandbox {fp}", "website_url": "https://example.com",
                "street_address": {"address1": "1 Loopback Way", "address2": None,
                                   "city": "Localhost", "region": "", "country": "US",
                                   "zip": "00000"}}},
        "links": {"self": f"{ctx.base}/api/accounts/{fp[:6].upper()}"}}
    return Reply(200, {"data": [account], "links": {"self": str(ctx.request.url)}}, items=1)


def get_profiles(ctx: Ctx) -> Reply:
    """``GET /api/profiles``: all profiles, or those a filter names, 20 (≤ 100) a page."""
    conditions = parse_filter(ctx.query("filter"), PROFILE_FILTER_FIELDS)
    size = page_size(ctx.op, ctx.query("page[size]"), 20)
    if conditions:
        pids, cursor = paging.offset_page(ctx.request, _matching(ctx, conditions), size)
    else:
        start = paging.decode(ctx.request, "i") or 0
        pids = ctx.account.profile_order[start:start + size]
        following = start + len(pids)
        more = following < len(ctx.account.profile_order)
        cursor = paging.encode("i", following) if more else None
    subs = ctx.wants("additional-fields[profile]", "subscriptions")
    data = [profile_resource(ctx.account.profiles[pid], ctx.base, with_subscriptions=subs)
            for pid in pids]
    return Reply(200, paging.collection(ctx.request, data, cursor), items=len(data))


def _matching(ctx: Ctx, conditions: list[Condition]) -> list[str]:
    """Profile ids meeting every condition, without repeats: in request order when an
    identifier is named, else in suppression order (only suppressed profiles are read)."""
    identity = [c for c in conditions if c.field in IDENTITY_FIELDS]
    suppression = [c for c in conditions if c.field not in IDENTITY_FIELDS]
    if not identity:
        profiles = ctx.account.profiles
        return [pid for pid in ctx.account.suppressed
                if all(_suppressed(profiles[pid], c) for c in suppression)]
    first, rest = identity[0], identity[1:]
    found: dict[str, None] = {}
    for value in first.values:
        pid = _lookup(ctx, first.field, value)
        if pid is not None and all(_holds(ctx, pid, c) for c in rest) and all(
                _suppressed(ctx.account.profiles[pid], c) for c in suppression):
            found[pid] = None
    return list(found)


def _suppressed(profile: Profile, condition: Condition) -> bool:
    """Whether one of the profile's suppressions meets a suppression condition."""
    kind, _, key = condition.field.removeprefix(_MARKETING).partition(".")
    entries = profile.suppression if kind == "suppression" else profile.list_suppressions
    if condition.op in COMPARISONS:
        bound = _moment(condition.values[0])
        return any(_compare(condition.op, _moment(e["timestamp"]), bound) for e in entries)
    return any(e.get(key) in condition.values for e in entries)


def _moment(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise errors.invalid(f"Invalid filter: {text!r} is not a date-time.",
                             parameter="filter") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _compare(op: str, left: Any, right: Any) -> bool:
    return bool({"greater-than": left > right, "greater-or-equal": left >= right,
                 "less-than": left < right, "less-or-equal": left <= right}[op])


def _lookup(ctx: Ctx, field: str, value: str) -> str | None:
    if field == "id":
        return value if value in ctx.account.profiles else None
    return ctx.account.owner(field, value)


def _holds(ctx: Ctx, pid: str, condition: Condition) -> bool:
    return any(_lookup(ctx, condition.field, v) == pid for v in condition.values)


def create_or_update_profile(ctx: Ctx) -> Reply:
    """``POST /api/profile-import``: 201 created or 200 updated, with the profile."""
    try:
        profile, created = upsert(ctx.account, ctx.body["data"], iso(),
                                  conflicts=ctx.sandbox.realism.identity_conflicts)
    except ProfileProblem as exc:
        title = _TITLES.get(exc.status, "Invalid input.")
        problem = errors.problem(exc.status, exc.code, title, exc.detail,
                                 pointer=f"/data{exc.pointer}")
        if exc.duplicate is not None:
            problem["meta"] = {"duplicate_profile_id": exc.duplicate}
        raise errors.ApiError(exc.status, [problem]) from None
    subs = ctx.wants("additional-fields[profile]", "subscriptions")
    doc = {"data": profile_resource(profile, ctx.base, with_subscriptions=subs),
           "links": {"self": f"{ctx.base}/api/profile-import"}}
    return Reply(201 if created else 200, doc, items=1)


HANDLERS: dict[str, Handler] = {
    "get_accounts": get_accounts, "get_profiles": get_profiles,
    "create_or_update_profile": create_or_update_profile,
}
