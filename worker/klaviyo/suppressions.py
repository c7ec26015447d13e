"""The profiles Klaviyo holds as unsubscribed or suppressed, read a page at a time.

``GET /api/profiles`` filters on the timestamps of a profile's suppressions (the spec's
``get_profiles`` filter description): ``subscriptions.email.marketing.suppression.timestamp``
for global suppressions and ``...list_suppressions.timestamp`` for suppressions from one
list, each with ``greater-than``. With ``additional-fields[profile]=subscriptions`` each
profile carries its whole email marketing consent, so one page says, for each of its
profiles, everything the opt-out mirror keeps:

- ``unsubscribed``: consent ``UNSUBSCRIBED``, or a suppression with reason ``UNSUBSCRIBE``
  (the person asked; a spam complaint also revokes consent);
- ``suppressed``: any other suppression (a hard bounce, an invalid email, a spam complaint
  Klaviyo kept as a suppression, suppressed by the account's users).

A list suppression is kept per list (``UNSUBSCRIBE`` → ``unsubscribed``, else
``suppressed``): it keeps the person off that list only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from contract import operations as ops
from worker.klaviyo.client import KlaviyoClient
from worker.klaviyo.pagination import CURSOR, SIZE, next_cursor, page_size

UNSUBSCRIBED = "unsubscribed"
SUPPRESSED = "suppressed"
REASONS = (UNSUBSCRIBED, SUPPRESSED)
# the two kinds of suppression the spec lets us filter on, by their timestamps
GLOBAL = "suppression"
PER_LIST = "list_suppressions"
KINDS = (GLOBAL, PER_LIST)
_FIELD = "subscriptions.email.marketing.{kind}.timestamp"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class OptOut:
    """What one profile's consent says: a global reason (None: none) and per-list reasons."""

    email: str = field(repr=False)
    reason: str | None
    lists: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Page:
    """One page of suppressed profiles."""

    opt_outs: list[OptOut]
    cursor: str | None  # the next page's; None on the last page


def filter_since(kind: str, since: datetime) -> str:
    """``greater-than(<kind>.timestamp,<since>)``: profiles suppressed after ``since``."""
    when = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"greater-than({_FIELD.format(kind=kind)},{when})"


def read_page(client: KlaviyoClient, kind: str, since: datetime,
              cursor: str | None = None) -> Page:
    """One page of profiles with a ``kind`` suppression newer than ``since``."""
    params = {
        "filter": filter_since(kind, since),
        "additional-fields[profile]": "subscriptions",
        "fields[profile]": "email,subscriptions.email.marketing",
        SIZE: page_size(ops.GET_PROFILES),
    }
    if cursor:
        params[CURSOR] = cursor
    document = client.call(ops.GET_PROFILES, params=params).document or {}
    data = document.get("data")
    resources = [r for r in data if isinstance(r, dict)] if isinstance(data, list) else []
    opt_outs = [o for o in (opt_out(r) for r in resources) if o is not None]
    return Page(opt_outs, next_cursor(ops.GET_PROFILES, document))


def opt_out(resource: dict[str, Any]) -> OptOut | None:
    """The opt-out a profile resource shows (None: it has no email)."""
    attributes = resource.get("attributes") or {}
    email = attributes.get("email")
    if not isinstance(email, str) or not email.strip():
        return None
    marketing = _marketing(resource)
    reasons = [str(s.get("reason", "")) for s in _entries(marketing, GLOBAL)]
    reason: str | None = None
    if marketing.get("consent") == "UNSUBSCRIBED" or "UNSUBSCRIBE" in reasons:
        reason = UNSUBSCRIBED
    elif reasons:
        reason = SUPPRESSED
    lists = {str(s["list_id"]): UNSUBSCRIBED if s.get("reason") == "UNSUBSCRIBE" else SUPPRESSED
             for s in _entries(marketing, PER_LIST) if s.get("list_id")}
    return OptOut(email.strip().lower(), reason, lists)


def _marketing(resource: dict[str, Any]) -> dict[str, Any]:
    subs = (resource.get("attributes") or {}).get("subscriptions") or {}
    marketing = (subs.get("email") or {}).get("marketing") or {}
    return marketing if isinstance(marketing, dict) else {}


def _entries(marketing: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    entries = marketing.get(kind) or []
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


def parse_time(value: object) -> datetime | None:
    """A Klaviyo timestamp as an aware datetime (UTC when it names no zone); None if unusable."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
