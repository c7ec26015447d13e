"""Identifiers: what makes an email or a phone number acceptable, and new ids."""

from __future__ import annotations

import base64
import hashlib
import os
import re
from typing import Any

# Close to what Klaviyo accepts: a dotted domain with a TLD, no spaces, one "@".
_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.[A-Za-z]{2,63}$"
)
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def email_error(value: Any) -> str | None:
    """Why ``value`` is not a valid email, or None when it is."""
    if not isinstance(value, str) or not _EMAIL.match(value) or ".." in value:
        return "Invalid email address."
    return None


def phone_error(value: Any) -> str | None:
    """Why ``value`` is not an E.164 phone number, or None when it is."""
    if not isinstance(value, str) or not _E164.match(value):
        return "Invalid phone number: expected E.164, for example +15005550006."
    return None


def index_key(field: str, value: str) -> str:
    """How a profile identifier is looked up: emails case-insensitively."""
    return value.strip().lower() if field == "email" else value


def profile_id() -> str:
    """A 26-character upper-case id shaped like Klaviyo's profile ids (hex: fast)."""
    return "01" + os.urandom(12).hex().upper()


def short_id(length: int = 6) -> str:
    """A short mixed-case id, like Klaviyo's list ids (``Y6nRLr``)."""
    raw = base64.b64encode(os.urandom(length)).decode("ascii")
    return raw.replace("+", "a").replace("/", "b")[:length]


def job_id() -> str:
    """An opaque job id."""
    return os.urandom(12).hex()


def fingerprint(api_key: str) -> str:
    """The account fingerprint the worker uses too: first 12 hex of sha256(key)."""
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()[:12]
