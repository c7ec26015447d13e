"""From a Lytics profile to Klaviyo profile attributes: emails, E.164 phones, Lytics values.

Emails are lower-cased as a whole. Klaviyo matches emails case-insensitively, and our Redis
keys (desired state, applied state, profile ids) must give one key per person, so
``Ann@Example.com`` and ``ann@example.com`` are the same user everywhere in this project.

Validation is syntactic and deliberately practical: it rejects what Klaviyo would refuse or what
is obviously broken (no ``@``, two ``@``, spaces, a domain without a dot, bad labels), not every
address RFC 5322 permits (quoted local parts, IP literals and non-ASCII addresses are refused).

Phones must already say their country (``+`` or ``00``): we never guess one. A field that cannot
be converted is left out and named in ``dropped``; the user is still exported. A user whose email
is missing or invalid is not exported at all and ``omitted`` says why.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from core.jobs import ExportJob

NO_EMAIL = "no_email"
INVALID_EMAIL = "invalid_email"
PHONE_INVALID = "phone_invalid"

MAX_EMAIL = 254
MAX_LOCAL = 64
_ATEXT = r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
# local part @ two or more labels; the last label (the TLD) not all digits: 10.0.0.1 is no domain.
# One pattern, because a backfill checks a million addresses.
_EMAIL = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*@(?:{_LABEL}\.)+(?=[a-z0-9-]*[a-z]){_LABEL}")
_PHONE_PUNCTUATION = re.compile(r"[\s\-.()/]")
_E164_DIGITS = re.compile(r"[1-9][0-9]{7,14}")
_TEXT_FIELDS_OR_NUMBER = frozenset({"location.latitude", "location.longitude"})


@dataclass(frozen=True)
class MappedProfile:
    """One Lytics profile as Klaviyo attributes, or the reason it cannot be exported."""

    email: str | None
    attributes: dict[str, Any] = field(default_factory=dict)
    omitted: str | None = None  # NO_EMAIL or INVALID_EMAIL: the user is not exported
    dropped: tuple[str, ...] = ()  # per-field problems, e.g. PHONE_INVALID: field left out

    @property
    def exported(self) -> bool:
        """True when the user goes to Klaviyo (they have a valid email)."""
        return self.omitted is None


def normalize_email(raw: object) -> str | None:
    """A trimmed, lower-cased, syntactically valid email address, or None."""
    if not isinstance(raw, str):
        return None
    email = raw.strip().lower()
    if len(email) > MAX_EMAIL or not _EMAIL.fullmatch(email):
        return None
    return email if email.index("@") <= MAX_LOCAL else None


def normalize_phone(raw: object) -> str | None:
    """E.164 (``+`` and 8-15 digits) from a number written with ``+`` or ``00``, or None.

    Spaces, dashes, dots, slashes and brackets are ignored, as is the ``(0)`` trunk prefix
    written after a country code (``+44 (0)20 ...``). Without a country code: None.
    """
    if not isinstance(raw, str):
        return None
    compact = _PHONE_PUNCTUATION.sub("", raw.replace("(0)", "", 1))
    if compact.startswith("+"):
        digits = compact[1:]
    elif compact.startswith("00"):
        digits = compact[2:]
    else:
        return None
    return f"+{digits}" if _E164_DIGITS.fullmatch(digits) else None


def coerce(value: Any) -> Any:
    """Lytics booleans ``"t"``/``"f"`` become True/False; every other value is kept as is."""
    if isinstance(value, str) and value in ("t", "f"):
        return value == "t"
    return value


def pick_email(raw: object) -> str | None:
    """The email in a Lytics value: the value itself, or the first valid one of a list."""
    if isinstance(raw, list):
        return next((e for e in map(normalize_email, raw) if e is not None), None)
    return normalize_email(raw)


def map_profile(job: ExportJob, profile: dict[str, Any]) -> MappedProfile:
    """Klaviyo attributes for ``profile`` under ``job.field_map``.

    A mapped Lytics field absent from ``profile`` is left out (Klaviyo keeps its value); a value
    of None is sent as None (Klaviyo clears it). Custom properties get :func:`coerce`.
    """
    raw_email = profile.get(job.email_field)
    email = pick_email(raw_email)
    if email is None:
        return MappedProfile(None, omitted=NO_EMAIL if _blank(raw_email) else INVALID_EMAIL)
    attributes: dict[str, Any] = {"email": email}
    dropped: list[str] = []
    for lytics_field, target in job.field_map.items():
        if lytics_field not in profile:
            continue
        value, problem = convert(target, profile[lytics_field])
        if problem is not None:
            dropped.append(problem)
        else:
            _place(attributes, target, value)
    return MappedProfile(email, attributes, dropped=tuple(dropped))


def convert(target: str, value: Any) -> tuple[Any, str | None]:
    """(Klaviyo value, None) for a mapped field, or (None, problem) when it must be left out."""
    if value is None:
        return None, None
    if target.startswith("properties."):
        return coerce(value), None
    if target == "phone_number":
        values = value if isinstance(value, list) else [value]
        phone = next((p for p in map(normalize_phone, values) if p is not None), None)
        return (phone, None) if phone else (None, PHONE_INVALID)
    if isinstance(value, str):
        return value, None
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return (value if target in _TEXT_FIELDS_OR_NUMBER else str(value)), None
    return None, f"{target}_invalid"


def _place(attributes: dict[str, Any], target: str, value: Any) -> None:
    """Put ``value`` at ``email``-level, under ``location`` or under ``properties``."""
    group, dot, name = target.partition(".")
    if dot:
        attributes.setdefault(group, {})[name] = value
    else:
        attributes[target] = value


def _blank(raw: object) -> bool:
    """True for a missing email: None, an empty string or a list of only those."""
    if isinstance(raw, list):
        return all(_blank(item) for item in raw)
    return raw is None or (isinstance(raw, str) and not raw.strip())
