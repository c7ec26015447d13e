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

Consent (a job with ``channels`` other than email alone, or ``historical_import``): each channel
the job subscribes on is kept for the person or left out with a reason. SMS needs a valid phone
(``phone_field``, in E.164); in a historical import a channel needs a past consent date, or,
without one, ``without_consent_date`` says whether it is subscribed normally or left out. What
is kept travels with the person's attributes under :data:`CONSENT_KEY` (channel → the consent
time in ISO 8601, or ``""`` for a normal subscribe), which is never sent as a profile attribute.
A person with no channel left is omitted (the first channel's reason); one who keeps a channel
is exported and each channel left out is named in ``dropped``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from core.jobs import ExportJob

NO_EMAIL = "no_email"
INVALID_EMAIL = "invalid_email"
PHONE_INVALID = "phone_invalid"
NO_PHONE = "no_phone"  # an SMS channel without a phone
NO_CONSENT_DATE = "no_consent_date"  # historical import: no past consent date, and "omit"
CONSENT_KEY = "_consent"  # in the stored attributes: channel → consent time ("" = now)
EPOCH_MS_ABOVE = 100_000_000_000  # a bigger epoch number is in milliseconds (after 1973)

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


def map_profile(
    job: ExportJob, profile: dict[str, Any], now: datetime | None = None
) -> MappedProfile:
    """Klaviyo attributes for ``profile`` under ``job.field_map``, and its consent channels.

    A mapped Lytics field absent from ``profile`` is left out (Klaviyo keeps its value); a value
    of None is sent as None (Klaviyo clears it). Custom properties get :func:`coerce`.
    ``now`` decides which consent dates are in the past (default: the clock).
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
    phone_problem = _job_phone(job, profile, attributes)
    if job.channels == ("email",) and not job.historical_import:
        if phone_problem == PHONE_INVALID:
            dropped.append(PHONE_INVALID)
        return MappedProfile(email, attributes, dropped=tuple(dropped))
    consent, problems = channel_consent(job, profile, phone_problem, now or datetime.now(UTC))
    if not consent:
        return MappedProfile(email, omitted=problems[0])
    if phone_problem == PHONE_INVALID and PHONE_INVALID not in problems:
        problems.append(PHONE_INVALID)  # email only: the phone field is left out
    attributes[CONSENT_KEY] = consent
    return MappedProfile(email, attributes, dropped=(*dropped, *problems))


def _job_phone(job: ExportJob, profile: dict[str, Any], attributes: dict[str, Any]) -> str | None:
    """Put the phone of ``job.phone_field`` in E.164 into ``attributes``; return the problem
    (NO_PHONE, PHONE_INVALID) or None."""
    if job.phone_field is None:
        return None
    raw = profile.get(job.phone_field)
    if _blank(raw):
        return NO_PHONE
    phone, problem = convert("phone_number", raw)
    if problem is not None:
        return problem
    attributes["phone_number"] = phone
    return None


def channel_consent(
    job: ExportJob, profile: dict[str, Any], phone_problem: str | None, now: datetime
) -> tuple[dict[str, str], list[str]]:
    """(channel → consent time or ``""``, reasons for the channels left out), in job order."""
    kept: dict[str, str] = {}
    problems: list[str] = []
    for channel in job.channels:
        if channel == "sms" and phone_problem is not None:
            problems.append(phone_problem)
            continue
        stamp = ""
        if job.historical_import:
            source = job.consent_field(channel)
            when = parse_time(profile.get(source)) if source else None
            if when is not None and when < now:
                stamp = when.isoformat()
            elif job.without_consent_date == "omit":
                problems.append(NO_CONSENT_DATE)
                continue
        kept[channel] = stamp
    return kept, problems


def parse_time(raw: object) -> datetime | None:
    """A timezone-aware time from a Lytics value: ISO 8601 (a date alone is midnight; no zone
    is UTC), or epoch seconds or milliseconds (a number or a string of digits); else None."""
    if isinstance(raw, str):
        text = raw.strip()
        if text.isdigit():
            raw = int(text)
        else:
            try:
                when = datetime.fromisoformat(text)
            except ValueError:
                return None
            return when if when.tzinfo else when.replace(tzinfo=UTC)
    if isinstance(raw, int | float) and not isinstance(raw, bool) and math.isfinite(raw):
        seconds = raw / 1000 if raw > EPOCH_MS_ABOVE else raw
        try:
            return datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return None


def klaviyo_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    """The stored attributes without what is never a profile attribute (:data:`CONSENT_KEY`)."""
    if CONSENT_KEY not in attributes:
        return attributes
    return {k: v for k, v in attributes.items() if k != CONSENT_KEY}


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
