"""Email marketing consent and suppressions, as Klaviyo keeps them on a profile.

A profile's ``suppression`` (global) and ``list_suppressions`` (per list) are lists of
``{reason, timestamp}`` (plus ``list_id``). ``can_receive_email_marketing`` is true
exactly when there is no global suppression (the spec's ``EmailMarketing`` schema).
Subscribing lifts UNSUBSCRIBE, SPAM_COMPLAINT (the spec prose calls it SPAM_REPORT)
and USER_SUPPRESSED, and nothing else: a hard bounce or an invalid email stays.
Bulk unsubscribe removes a member of the given list from it (a list suppression) and
unsubscribes anyone else globally (the spec's warning on ``bulk_unsubscribe_profiles``).
"""

from __future__ import annotations

from typing import Any

from sandbox.account import Account
from sandbox.lists import ListRec
from sandbox.profiles import Profile

REASONS = ("HARD_BOUNCE", "INVALID_EMAIL", "SPAM_COMPLAINT", "UNSUBSCRIBE", "USER_SUPPRESSED")
LIFTED_BY_SUBSCRIBE = frozenset({"UNSUBSCRIBE", "SPAM_COMPLAINT", "USER_SUPPRESSED"})
UNSUBSCRIBING = frozenset({"UNSUBSCRIBE", "SPAM_COMPLAINT"})  # these also revoke consent


def unsubscribed(now: str) -> dict[str, Any]:
    """An UNSUBSCRIBED email consent record."""
    return {"consent": "UNSUBSCRIBED", "can_receive_email_marketing": False,
            "consent_timestamp": now, "last_updated": now, "method": "API",
            "method_detail": "", "double_optin": None, "suppression": [],
            "list_suppressions": []}


def suppress(account: Account, profile: Profile, reason: str, now: str,
             lst: ListRec | None = None) -> None:
    """Suppress globally, or from one list (which also removes the profile from it)."""
    if reason not in REASONS:
        raise ValueError(f"reason must be one of {list(REASONS)}, not {reason!r}")
    if lst is not None:
        lst.remove(profile.id)
        profile.list_suppressions = [
            *[s for s in profile.list_suppressions if s["list_id"] != lst.id],
            {"list_id": lst.id, "reason": reason, "timestamp": now}]
    else:
        profile.suppression = [*[s for s in profile.suppression if s["reason"] != reason],
                               {"reason": reason, "timestamp": now}]
        if reason in UNSUBSCRIBING:
            profile.email_marketing = unsubscribed(now)
    profile.updated = now
    account.suppressed[profile.id] = None


def lift_for_subscribe(account: Account, profile: Profile, list_id: str | None) -> None:
    """What a subscribe job lifts: the three reasons, globally and on its own list."""
    if not profile.suppression and not profile.list_suppressions:
        return
    profile.suppression = [s for s in profile.suppression
                           if s["reason"] not in LIFTED_BY_SUBSCRIBE]
    profile.list_suppressions = [s for s in profile.list_suppressions
                                 if s["list_id"] != list_id
                                 or s["reason"] not in LIFTED_BY_SUBSCRIBE]
    if not profile.suppression and not profile.list_suppressions:
        account.suppressed.pop(profile.id, None)


def unsubscribe(account: Account, profile: Profile, lst: ListRec | None, now: str) -> None:
    """Bulk unsubscribe of one profile: from the list if it is a member, else globally (a
    pending double opt-in is not a member, and no longer pending either)."""
    if lst is not None and profile.id in lst.members:
        suppress(account, profile, "UNSUBSCRIBE", now, lst)
        return
    if lst is not None:
        lst.pending.pop(profile.id, None)
    suppress(account, profile, "UNSUBSCRIBE", now)
