"""Identifiers Klaviyo said belong to another profile, per user, so they are not sent again.

Writing a profile whose phone number or external id is already another profile's is answered
with 409 ``duplicate_profile`` (for a bulk import: an import error for that profile, the rest
of the job imported). The user is not lost over it: the conflicting value is remembered here
(hash ``{prefix}:job:{job}:conflicts``, email → JSON ``{identifier: value}``) and every later
bulk import or subscribe for the user leaves it out; the user is sent again without it and
counted once as ``dropped:<identifier>_conflict``. Only the value Klaviyo refused is left out:
a new phone number in Lytics is sent again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import redis

from core.keys import JobKeys

IDENTIFIERS = ("phone_number", "external_id")  # what can conflict (the email is the key)
CONFLICT_SUFFIX = "_conflict"  # dropped:<identifier>_conflict

Conflict = dict[str, str]  # identifier → the value that belongs to another profile


def reason(identifier: str) -> str:
    """The ``dropped:`` reason for a conflicting identifier (``phone_number_conflict``)."""
    return identifier + CONFLICT_SUFFIX


def strip(attributes: Mapping[str, Any], conflict: Conflict | None) -> dict[str, Any]:
    """``attributes`` without the identifiers whose value is known to belong to another profile."""
    if not conflict:
        return dict(attributes)
    return {k: v for k, v in attributes.items() if not (k in conflict and conflict[k] == v)}


class ConflictStore:
    """The conflicts hash of one job."""

    def __init__(self, client: redis.Redis, keys: JobKeys) -> None:
        self.redis = client
        self.key = keys.conflicts

    def read(self, emails: Sequence[str]) -> dict[str, Conflict]:
        """The known conflicts of these users (one round trip; most have none)."""
        if not emails:
            return {}
        raw = self.redis.hmget(self.key, list(emails))
        return {e: orjson.loads(v) for e, v in zip(emails, raw, strict=True) if v}

    def add(self, found: Mapping[str, Conflict]) -> None:
        """Remember new conflicts, merged with those already known for each user."""
        if not found:
            return
        known = self.read(list(found))
        mapping = {e: orjson.dumps({**known.get(e, {}), **c}) for e, c in found.items()}
        self.redis.hset(self.key, mapping=mapping)  # type: ignore[arg-type]  # redis-py Mapping is invariant
