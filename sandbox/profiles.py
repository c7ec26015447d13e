"""A Klaviyo profile held in memory, and how it is rendered as a JSON:API resource."""

from __future__ import annotations

from typing import Any

IDENTIFIERS = ("email", "phone_number", "external_id")
SCALARS = ("email", "phone_number", "external_id", "first_name", "last_name", "organization",
           "locale", "title", "image", "_kx")
SHOWN = ("email", "phone_number", "external_id", "first_name", "last_name", "organization",
         "locale", "title", "image")
LOCATION = ("address1", "address2", "city", "country", "region", "zip", "timezone", "ip",
            "latitude", "longitude")


class Profile:
    """One profile; ``attrs`` holds the scalar attributes that are set."""

    __slots__ = ("attrs", "created", "email_marketing", "id", "list_suppressions", "location",
                 "properties", "sms_marketing", "suppression", "updated")

    def __init__(self, pid: str, now: str) -> None:
        self.id = pid
        self.attrs: dict[str, Any] = {}
        self.location: dict[str, Any] = {}
        self.properties: dict[str, Any] = {}
        self.created = now
        self.updated = now
        self.email_marketing: dict[str, Any] | None = None
        self.sms_marketing: dict[str, Any] | None = None
        self.suppression: list[dict[str, Any]] = []  # global: {reason, timestamp}
        self.list_suppressions: list[dict[str, Any]] = []  # {list_id, reason, timestamp}

    @property
    def email(self) -> str | None:
        """The profile's email, if any."""
        value = self.attrs.get("email")
        return value if isinstance(value, str) else None


def consent(now: str, *, double_optin: bool, custom_source: str | None) -> dict[str, Any]:
    """A SUBSCRIBED email consent record, as Klaviyo reports it."""
    return {"consent": "SUBSCRIBED", "can_receive_email_marketing": True,
            "consent_timestamp": now, "last_updated": now, "method": "API",
            "method_detail": custom_source or "", "double_optin": double_optin,
            "suppression": [], "list_suppressions": []}


def sms_consent(now: str, custom_source: str | None) -> dict[str, Any]:
    """A SUBSCRIBED SMS marketing consent record."""
    return {"consent": "SUBSCRIBED", "can_receive_sms_marketing": True,
            "consent_timestamp": now, "last_updated": now, "method": "API",
            "method_detail": custom_source or ""}


def subscriptions(profile: Profile) -> dict[str, Any]:
    """``subscriptions`` as returned with ``additional-fields[profile]=subscriptions``."""
    email = email_marketing(profile)
    sms = profile.sms_marketing or {
        "consent": "NEVER_SUBSCRIBED", "can_receive_sms_marketing": False,
        "consent_timestamp": None, "last_updated": None, "method": None, "method_detail": ""}
    return {"email": {"marketing": email}, "sms": {"marketing": sms}}


def email_marketing(profile: Profile) -> dict[str, Any]:
    """``subscriptions.email.marketing``: consent records are shared between profiles, so
    a suppressed profile gets a copy with its suppressions. ``can_receive_email_marketing``
    is true exactly when there is no global suppression (the spec's ``EmailMarketing``)."""
    base = profile.email_marketing or _NEVER
    if not profile.suppression and not profile.list_suppressions:
        return base
    return {**base, "can_receive_email_marketing": not profile.suppression,
            "suppression": list(profile.suppression),
            "list_suppressions": list(profile.list_suppressions)}


_NEVER: dict[str, Any] = {
    "consent": "NEVER_SUBSCRIBED", "can_receive_email_marketing": True,
    "consent_timestamp": None, "last_updated": None, "method": None, "method_detail": "",
    "double_optin": None, "suppression": [], "list_suppressions": []}


def profile_resource(profile: Profile, base: str, *, with_subscriptions: bool = False,
                     joined: str | None = None) -> dict[str, Any]:
    """The JSON:API resource object for ``profile``."""
    attrs = profile.attrs
    attributes: dict[str, Any] = {key: attrs.get(key) for key in SHOWN}
    attributes["created"] = profile.created
    attributes["updated"] = profile.updated
    attributes["last_event_date"] = None
    attributes["location"] = {key: profile.location.get(key) for key in LOCATION}
    attributes["properties"] = dict(profile.properties)
    if joined is not None:
        attributes["joined_group_at"] = joined
    if with_subscriptions:
        attributes["subscriptions"] = subscriptions(profile)
    url = f"{base}/api/profiles/{profile.id}"
    return {"type": "profile", "id": profile.id, "attributes": attributes,
            "relationships": {"lists": {"links": {"self": f"{url}/relationships/lists",
                                                  "related": f"{url}/lists"}}},
            "links": {"self": url}}
