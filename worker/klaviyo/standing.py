"""A profile's standing in Klaviyo: email marketing consent and suppressions, read by email.

``GET /api/profiles`` with ``additional-fields[profile]=subscriptions`` gives
``subscriptions.email.marketing``: ``consent`` (``SUBSCRIBED``, ``NEVER_SUBSCRIBED``,
``UNSUBSCRIBED``...), ``can_receive_email_marketing`` (false exactly while a global
suppression stands), ``suppression[] {reason, timestamp}`` and
``list_suppressions[] {list_id, reason, timestamp}`` (docs: klaviyo-behaviour.md). The audit
uses it to tell a suppressed or unconfirmed person from one who is missing for no reason, and
``explain`` to show one person's consent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from contract import operations as ops
from worker.klaviyo.client import KlaviyoClient
from worker.klaviyo.pagination import SIZE, iter_resources, page_size
from worker.klaviyo.profiles import LOOKUP_CHUNK, email_filter

SUBSCRIBED = "SUBSCRIBED"


@dataclass(frozen=True)
class Standing:
    """One profile's email marketing consent and suppressions, as Klaviyo has them."""

    profile_id: str
    consent: str | None
    can_receive: bool
    suppressions: tuple[dict[str, Any], ...] = ()
    list_suppressions: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    double_optin: bool | None = None
    consent_timestamp: str | None = None

    def suppressed_for(self, list_id: str) -> str | None:
        """Why this profile cannot be on ``list_id`` (a reason), or None when it can."""
        for entry in self.suppressions:
            return str(entry.get("reason") or "SUPPRESSED")
        for entry in self.list_suppressions:
            if entry.get("list_id") == list_id:
                return f"{entry.get('reason') or 'SUPPRESSED'} (this list)"
        return None if self.can_receive else "cannot receive email marketing"

    @property
    def subscribed(self) -> bool:
        """Klaviyo records email marketing consent (a double opt-in confirmed, among others)."""
        return self.consent == SUBSCRIBED

    @classmethod
    def from_resource(cls, resource: dict[str, Any]) -> Standing:
        attributes = resource.get("attributes") or {}
        marketing = ((attributes.get("subscriptions") or {}).get("email") or {}).get(
            "marketing"
        ) or {}
        return cls(
            profile_id=str(resource["id"]),
            consent=marketing.get("consent"),
            can_receive=bool(marketing.get("can_receive_email_marketing", True)),
            suppressions=tuple(marketing.get("suppression") or ()),
            list_suppressions=tuple(marketing.get("list_suppressions") or ()),
            double_optin=marketing.get("double_optin"),
            consent_timestamp=marketing.get("consent_timestamp"),
        )


def standings(client: KlaviyoClient, emails: Sequence[str]) -> dict[str, Standing]:
    """Lower-cased email → standing for the emails Klaviyo knows (100 per call)."""
    wanted = list(dict.fromkeys(e.strip().lower() for e in emails if e.strip()))
    found: dict[str, Standing] = {}
    for start in range(0, len(wanted), LOOKUP_CHUNK):
        params = {
            "filter": email_filter(wanted[start : start + LOOKUP_CHUNK]),
            SIZE: page_size(ops.GET_PROFILES),
            "additional-fields[profile]": "subscriptions",
        }
        for resource in iter_resources(client, ops.GET_PROFILES, params=params):
            email = (resource.get("attributes") or {}).get("email")
            if isinstance(email, str):
                found.setdefault(email.lower(), Standing.from_resource(resource))
    return found
