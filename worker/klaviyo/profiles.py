"""Klaviyo profiles: upsert one, and look ids up by email.

Profile attributes are Klaviyo's (``email``, ``first_name``, ``location{...}``,
``properties{...}``); a key set to None clears that field, a missing key leaves it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from contract import operations as ops
from worker.klaviyo.client import KlaviyoClient
from worker.klaviyo.errors import TransientError
from worker.klaviyo.pagination import SIZE, iter_resources, page_size, quote_filter_value

LOOKUP_CHUNK = ops.GET_PROFILES.batch_cap  # emails per any(...) filter: one full page


def profile_body(attributes: dict[str, Any]) -> dict[str, Any]:
    """The ``create_or_update_profile`` request body for these attributes."""
    return {"data": {"type": "profile", "attributes": attributes}}


def upsert_profile(client: KlaviyoClient, attributes: dict[str, Any]) -> tuple[str, bool]:
    """Create or update one profile; return its id and whether it was created (201)."""
    response = client.call(ops.PROFILE_IMPORT, body=profile_body(attributes))
    profile_id = ((response.document or {}).get("data") or {}).get("id")
    if not profile_id:  # the spec lets ``id`` be null; an upsert is safe to repeat
        raise TransientError(f"{ops.PROFILE_IMPORT.name} answered without a profile id")
    return str(profile_id), response.status == 201


def email_filter(emails: Iterable[str]) -> str:
    """``any(email,["a@x","b@y"])`` with each email quoted; raises ValueError when empty."""
    quoted = [quote_filter_value(email) for email in emails]
    if not quoted:
        raise ValueError("email_filter needs at least one email")
    return f"any(email,[{','.join(quoted)}])"


def find_profile_ids(client: KlaviyoClient, emails: Sequence[str]) -> dict[str, str]:
    """Lower-cased email → profile id for the emails Klaviyo knows; others are absent."""
    wanted = list(dict.fromkeys(email.strip().lower() for email in emails if email.strip()))
    found: dict[str, str] = {}
    for start in range(0, len(wanted), LOOKUP_CHUNK):
        found.update(_lookup(client, wanted[start:start + LOOKUP_CHUNK]))
    return found


def _lookup(client: KlaviyoClient, emails: Sequence[str]) -> dict[str, str]:
    params = {
        "filter": email_filter(emails),
        SIZE: page_size(ops.GET_PROFILES),
        "fields[profile]": "email",
    }
    found: dict[str, str] = {}
    for resource in iter_resources(client, ops.GET_PROFILES, params=params):
        email = (resource.get("attributes") or {}).get("email")
        if isinstance(email, str):
            found.setdefault(email.lower(), str(resource["id"]))
    return found
