"""What a subscribe says for each user: the channels, the phone and the consent dates. Pure.

The channels kept for a user when their event was recorded travel with their attributes
(``normalize.CONSENT_KEY``: channel → consent time, or ``""`` for a normal subscribe). A
channel with a consent time goes in a ``historical_import`` job (no confirmation email, no
"added to list" flows, ``consented_at`` as given); one without in a normal job. Klaviyo sets
``historical_import`` per job, so a user with both kinds is in one job of each. A phone known
to belong to another profile (:mod:`worker.state.conflicts`) is not sent: the SMS channel is
left out for that user (already counted as ``dropped:phone_number_conflict``), and a user with
no channel left cannot be sent at all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from core.jobs import ExportJob
from worker.engine.normalize import CONSENT_KEY
from worker.klaviyo.subscriptions import SubscribeProfile
from worker.state.conflicts import Conflict
from worker.state.desired import Desired

Part = list[tuple[Desired, SubscribeProfile]]
PHONE_TAKEN = "phone_number belongs to another profile (409 duplicate_profile): no channel left"
NO_CHANNEL = "no channel to subscribe on (a historical import without a consent date)"


@dataclass
class SubscribeParts:
    """A batch split into a historical job, a normal job and what cannot be sent."""

    historical: Part = field(default_factory=list)
    normal: Part = field(default_factory=list)
    unsendable: list[tuple[Desired, str]] = field(default_factory=list)


def subscribe_parts(
    job: ExportJob, users: Sequence[Desired], conflicts: Mapping[str, Conflict] | None = None
) -> SubscribeParts:
    """Split ``users`` by the kind of subscribe each channel of theirs needs."""
    parts = SubscribeParts()
    if job.channels == ("email",) and not job.historical_import:  # the usual job: one kind
        parts.normal = [(u, SubscribeProfile(email=u.email)) for u in users]
        return parts
    taken = conflicts or {}
    for user in users:
        channels = _channels(job, user)
        phone = user.attributes.get("phone_number")
        conflict = taken.get(user.email, {})
        if not isinstance(phone, str) or conflict.get("phone_number") == phone:
            phone = None
        lost_phone = "sms" in channels and phone is None and "phone_number" in conflict
        if phone is None:
            channels.pop("sms", None)
        historical = {c: at for c, at in channels.items() if at}
        normal = [c for c, at in channels.items() if not at]
        if historical:
            parts.historical.append((user, _profile(user.email, phone, historical)))
        if normal:
            parts.normal.append((user, _profile(user.email, phone, dict.fromkeys(normal, ""))))
        if not channels:
            parts.unsendable.append((user, PHONE_TAKEN if lost_phone else NO_CHANNEL))
    return parts


def _channels(job: ExportJob, user: Desired) -> dict[str, str]:
    """The user's channels (channel → consent time or ``""``) that the job still subscribes on."""
    stored: Any = user.attributes.get(CONSENT_KEY)
    if not isinstance(stored, dict):  # recorded before the job named channels or history
        normal = not job.historical_import or job.without_consent_date == "subscribe"
        stored = dict.fromkeys(job.channels, "") if normal else {}
    return {c: str(at or "") for c, at in stored.items() if c in job.channels}


def _profile(email: str, phone: str | None, channels: dict[str, str]) -> SubscribeProfile:
    def when(channel: str) -> datetime | None:
        at = channels.get(channel)
        return datetime.fromisoformat(at) if at else None

    return SubscribeProfile(
        email=email,
        consented_at=when("email"),
        phone=phone if "sms" in channels else None,
        sms="sms" in channels,
        sms_consented_at=when("sms"),
        email_marketing="email" in channels,
    )
