"""Subscribe profiles to email and SMS marketing and to a list, in one asynchronous job.

Klaviyo creates missing profiles, honours the list's single or double opt-in and
answers 202 with no body: accepted, not done. ``historical_import`` skips double
opt-in and "added to list" flows and then needs ``consented_at`` (in the past) for
every consent given; without it Klaviyo refuses any ``consented_at``, so none is sent.
Each profile names the channels it is subscribed on: email marketing (the default),
SMS marketing (``phone_number`` in E.164 is then required), or both. The phone is sent
only with the SMS channel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from contract import operations as ops
from worker.klaviyo.client import KlaviyoClient

CONSENT = "SUBSCRIBED"
_SUBSCRIBED: dict[str, Any] = {"consent": CONSENT}  # shared by every non-historical profile


@dataclass(frozen=True)
class SubscribeProfile:
    """One person to subscribe. ``consented_at`` and ``sms_consented_at`` (timezone-aware)
    are the times consent was given, for historical imports; ``sms`` subscribes
    ``phone`` to SMS marketing, ``email_marketing`` the email to email marketing."""

    email: str = field(repr=False)
    consented_at: datetime | None = None
    phone: str | None = field(default=None, repr=False)
    sms: bool = False
    sms_consented_at: datetime | None = None
    email_marketing: bool = True


def _consent(when: datetime | None, historical: bool, index: int) -> dict[str, Any]:
    """``SubscriptionParameters``: with the past, timezone-aware time it was given
    (historical imports), else plain SUBSCRIBED."""
    if not historical:
        return _SUBSCRIBED
    if when is None or when.tzinfo is None:
        raise ValueError(
            f"historical_import needs a timezone-aware consented_at (profile {index})"
        )
    if when > datetime.now(UTC):
        raise ValueError(f"consented_at must be in the past (profile {index})")
    return {"consent": CONSENT, "consented_at": when.isoformat()}


def profile_item(p: SubscribeProfile, index: int, historical: bool) -> dict[str, Any]:
    """One ``ProfileSubscriptionCreateQueryResourceObject``."""
    channels: dict[str, Any] = {}
    if p.email_marketing:
        channels["email"] = {"marketing": _consent(p.consented_at, historical, index)}
    attributes: dict[str, Any] = {"email": p.email}
    if p.sms:
        if not p.phone:
            raise ValueError(f"SMS consent needs a phone number (profile {index})")
        attributes["phone_number"] = p.phone
        channels["sms"] = {"marketing": _consent(p.sms_consented_at, historical, index)}
    if not channels:
        raise ValueError(f"no channel to subscribe (profile {index})")
    attributes["subscriptions"] = channels
    return {"type": "profile", "attributes": attributes}


def subscribe_body(
    list_id: str,
    profiles: Sequence[SubscribeProfile],
    *,
    historical_import: bool = False,
    custom_source: str | None = None,
) -> dict[str, Any]:
    """The ``bulk_subscribe_profiles`` request body; ValueError on missing consent times."""
    items = [profile_item(p, i, historical_import) for i, p in enumerate(profiles)]
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
    """Subscribe ``profiles`` (≤1,000) on ``list_id``; none sends nothing."""
    if not profiles:
        return
    body = subscribe_body(
        list_id, profiles, historical_import=historical_import, custom_source=custom_source
    )
    client.call(ops.BULK_SUBSCRIBE, body=body)
