"""Subscribe profiles to email marketing and to a list, in one asynchronous job.

Klaviyo creates missing profiles, honours the list's single or double opt-in and
answers 202 with no body: accepted, not done. ``historical_import`` skips double
opt-in and "added to list" flows and then needs ``consented_at`` (in the past) for
every profile; without it Klaviyo refuses any ``consented_at``, so none is sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from contract import operations as ops
from worker.klaviyo.client import KlaviyoClient

CONSENT = "SUBSCRIBED"


@dataclass(frozen=True)
class SubscribeProfile:
    """One email to subscribe; ``consented_at`` (timezone-aware) for historical imports."""

    email: str = field(repr=False)
    consented_at: datetime | None = None


def _historical_consent(profile: SubscribeProfile, index: int) -> dict[str, Any]:
    """Consent with the past, timezone-aware time it was given (historical imports)."""
    when = profile.consented_at
    if when is None or when.tzinfo is None:
        raise ValueError(
            f"historical_import needs a timezone-aware consented_at (profile {index})"
        )
    if when > datetime.now(UTC):
        raise ValueError(f"consented_at must be in the past (profile {index})")
    return {"consent": CONSENT, "consented_at": when.isoformat()}


def subscribe_body(
    list_id: str,
    profiles: Sequence[SubscribeProfile],
    *,
    historical_import: bool = False,
    custom_source: str | None = None,
) -> dict[str, Any]:
    """The ``bulk_subscribe_profiles`` request body; ValueError on missing consent times."""
    subscribed = {"consent": CONSENT}  # the same for every profile unless importing history
    items = [
        {
            "type": "profile",
            "attributes": {
                "email": p.email,
                "subscriptions": {
                    "email": {
                        "marketing": _historical_consent(p, i) if historical_import else subscribed
                    }
                },
            },
        }
        for i, p in enumerate(profiles)
    ]
    attributes: dict[str, Any] = {
        "profiles": {"data": items},
        "historical_import": historical_import,
    }
    if custom_source is not None:
        attributes["custom_source"] = custom_source
    return {
        "data": {
            "type": "profile-subscription-bulk-create-job",
            "attributes": attributes,
            "relationships": {"list": {"data": {"type": "list", "id": list_id}}},
        }
    }


def subscribe_profiles(
    client: KlaviyoClient,
    list_id: str,
    profiles: Sequence[SubscribeProfile],
    *,
    historical_import: bool = False,
    custom_source: str | None = None,
) -> None:
    """Subscribe ``profiles`` (≤1,000) to email marketing on ``list_id``; none sends nothing."""
    if not profiles:
        return
    body = subscribe_body(
        list_id, profiles, historical_import=historical_import, custom_source=custom_source
    )
    client.call(ops.BULK_SUBSCRIBE, body=body)
