"""Profile upserts as profile-import and bulk import jobs do them.

Rules: a field set to ``null`` is cleared, an omitted field is unchanged,
``properties`` and ``location`` are merged key by key (a ``null`` value clears that
key), ``meta.patch_properties`` may ``append``, ``unappend`` and ``unset``. The
profile is found by ``id``, then email, phone number and external id.

Bulk import differs in one rule (``nulls_clear=False``): a ``null`` leaves the field as
it was (Klaviyo's bulk import guide). With ``conflicts`` (the realistic default), a
profile found by its phone number or external id that holds another email is not
taken over: 409 ``duplicate_profile`` with the other profile's id in ``meta``
(klaviyo-api-node #75).
"""

from __future__ import annotations

from typing import Any

from sandbox.account import Account
from sandbox.identity import email_error, index_key, phone_error
from sandbox.profiles import IDENTIFIERS, SCALARS, Profile


class ProfileProblem(Exception):
    """One profile refused; ``pointer`` is relative to the profile resource."""

    def __init__(self, status: int, code: str, pointer: str, detail: str,
                 duplicate: str | None = None) -> None:
        super().__init__(status, code, pointer, detail)
        self.status = status
        self.code = code
        self.pointer = pointer
        self.detail = detail
        self.duplicate = duplicate  # the id of the profile that holds the identifier


def identity_problem(resource: dict[str, Any]) -> ProfileProblem | None:
    """What a synchronous check refuses in one profile: a malformed email or phone
    number, or no identifier at all (when no ``id`` names the profile)."""
    attrs = resource.get("attributes") or {}
    try:
        check_identifiers(attrs)
    except ProfileProblem as exc:
        return exc
    if not resource.get("id") and not any(attrs.get(field) for field in IDENTIFIERS):
        return ProfileProblem(400, "invalid", "/attributes",
                              "A profile needs an email, a phone_number or an external_id.")
    return None


def check_identifiers(attrs: dict[str, Any]) -> None:
    """Refuse a malformed email or a phone number that is not E.164."""
    if attrs.get("email") is not None and (why := email_error(attrs["email"])):
        raise ProfileProblem(400, "invalid", "/attributes/email", why)
    if attrs.get("phone_number") is not None and (why := phone_error(attrs["phone_number"])):
        raise ProfileProblem(400, "invalid", "/attributes/phone_number", why)


def upsert(account: Account, resource: dict[str, Any], now: str, *, nulls_clear: bool = True,
           conflicts: bool = False) -> tuple[Profile, bool]:
    """Create or update one profile; returns it and whether it was created."""
    attrs = resource.get("attributes") or {}
    check_identifiers(attrs)
    if not nulls_clear:
        attrs = _without_nulls(attrs)
    profile = _match(account, resource.get("id"), attrs, conflicts)
    if profile is None:
        if not any(attrs.get(field) for field in IDENTIFIERS):
            raise ProfileProblem(400, "invalid", "/attributes",
                                 "A profile needs an email, a phone_number or an external_id.")
    else:
        _check_conflicts(account, profile, attrs)
    created = profile is None
    target = account.create_profile(now) if profile is None else profile
    apply(account, target, attrs, resource.get("meta"), now)
    return target, created


def _without_nulls(attrs: dict[str, Any]) -> dict[str, Any]:
    """Bulk import's reading: a null (at the top or in location/properties) changes nothing."""
    kept = {k: v for k, v in attrs.items() if v is not None}
    for key in ("location", "properties"):
        if isinstance(kept.get(key), dict):
            kept[key] = {k: v for k, v in kept[key].items() if v is not None}
    return kept


def _match(account: Account, pid: Any, attrs: dict[str, Any], conflicts: bool) -> Profile | None:
    if pid:
        profile = account.profiles.get(pid)
        if profile is None:
            raise ProfileProblem(404, "not_found", "/id", f"Profile {pid} does not exist.")
        return profile
    for rank, field in enumerate(IDENTIFIERS):
        value = attrs.get(field)
        if value and (found := account.lookup(field, value)) is not None:
            if conflicts:
                _check_takeover(found, attrs, IDENTIFIERS[:rank])
            return found
    return None


def _check_takeover(found: Profile, attrs: dict[str, Any], stronger: tuple[str, ...]) -> None:
    """409 when ``found`` (matched on a weaker identifier) holds another value of a
    stronger one the request gives (a new email with another person's phone number)."""
    for field in stronger:
        value, held = attrs.get(field), found.attrs.get(field)
        if value and isinstance(held, str) and index_key(field, held) != index_key(field, value):
            raise ProfileProblem(409, "duplicate_profile", "/attributes",
                                 "A profile already exists with one of these identifiers.",
                                 duplicate=found.id)


def _check_conflicts(account: Account, profile: Profile, attrs: dict[str, Any]) -> None:
    for field in IDENTIFIERS:
        value = attrs.get(field)
        if value and (owner := account.owner(field, value)) not in (None, profile.id):
            raise ProfileProblem(409, "duplicate_profile", f"/attributes/{field}",
                                 f"This {field} already belongs to profile {owner}.",
                                 duplicate=owner)


def apply(account: Account, profile: Profile, attrs: dict[str, Any], meta: Any,
          now: str) -> None:
    """Write ``attrs`` (already checked) onto ``profile``."""
    for key in SCALARS:
        if key not in attrs:
            continue
        value = attrs[key]
        if key in IDENTIFIERS:
            account.set_identifier(profile, key, value if value else None)
        elif value is None:
            profile.attrs.pop(key, None)
        else:
            profile.attrs[key] = value
    if "location" in attrs:
        _merge(profile.location, attrs["location"])
    if "properties" in attrs:
        _merge(profile.properties, attrs["properties"])
    if isinstance(meta, dict) and isinstance(meta.get("patch_properties"), dict):
        _patch(profile.properties, meta["patch_properties"])
    profile.updated = now


def _merge(target: dict[str, Any], changes: Any) -> None:
    if changes is None:
        target.clear()
        return
    for key, value in changes.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value


def _patch(properties: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in (patch.get("append") or {}).items():
        current = properties.get(key)
        items = current if isinstance(current, list) else ([] if current is None else [current])
        properties[key] = [*items, *(value if isinstance(value, list) else [value])]
    for key, value in (patch.get("unappend") or {}).items():
        current = properties.get(key)
        if isinstance(current, list):
            drop = value if isinstance(value, list) else [value]
            properties[key] = [item for item in current if item not in drop]
    unset = patch.get("unset")
    for key in [unset] if isinstance(unset, str) else (unset or []):
        properties.pop(key, None)
