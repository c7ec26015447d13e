"""One Klaviyo account (one API key): its profiles, indexes, lists and jobs."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from sandbox.identity import index_key, profile_id
from sandbox.lists import ListRec
from sandbox.profiles import IDENTIFIERS, Profile

if TYPE_CHECKING:
    from sandbox.jobs import ImportJob, SubscribeJob, UnsubscribeJob


class Account:
    """Everything one key sees; the sandbox lock guards it."""

    def __init__(self, fingerprint: str, rng: random.Random | None = None) -> None:
        self.fingerprint = fingerprint
        self.rng = rng or random.Random()
        self.profiles: dict[str, Profile] = {}
        self.profile_order: list[str] = []
        self.index: dict[str, dict[str, str]] = {field: {} for field in IDENTIFIERS}
        self.lists: dict[str, ListRec] = {}
        self.import_jobs: dict[str, ImportJob] = {}
        self.subscribe_jobs: dict[str, SubscribeJob | UnsubscribeJob] = {}
        self.suppressed: dict[str, None] = {}  # ids of profiles with any suppression
        self._seq = 0

    def next_seq(self) -> int:
        """A number that only grows: list join order and cursors."""
        self._seq += 1
        return self._seq

    def lookup(self, field: str, value: str) -> Profile | None:
        """The profile whose ``field`` is ``value`` (emails case-insensitively)."""
        pid = self.index[field].get(index_key(field, value))
        return self.profiles[pid] if pid is not None else None

    def owner(self, field: str, value: str) -> str | None:
        """The id of the profile that holds this identifier, if any."""
        return self.index[field].get(index_key(field, value))

    def create_profile(self, now: str) -> Profile:
        """A new, empty profile."""
        profile = Profile(profile_id(), now)
        self.profiles[profile.id] = profile
        self.profile_order.append(profile.id)
        return profile

    def set_identifier(self, profile: Profile, field: str, value: str | None) -> None:
        """Set or clear (None) an identifier and keep the index right; the caller
        has checked that no other profile holds ``value``."""
        old = profile.attrs.get(field)
        if isinstance(old, str):
            self.index[field].pop(index_key(field, old), None)
        if value is None:
            profile.attrs.pop(field, None)
            return
        profile.attrs[field] = value
        self.index[field][index_key(field, value)] = profile.id

    def list_or_none(self, list_id: str) -> ListRec | None:
        """The list with this id, if this account has it."""
        return self.lists.get(list_id)
