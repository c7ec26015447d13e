"""The one email redactor: every log line, error message, stored reason and dead letter that
may hold an address passes through here (Klaviyo error details and Lytics payloads echo them).

``mask_email`` keeps the first character and the domain (``a***@example.com``): useful in a
log, private enough. ``redact`` masks every email-shaped part of a text and may cut it to a
length; ``show`` is a value's short, masked ``repr`` for an error message.
"""

from __future__ import annotations

import re

_EMAIL = re.compile(r"[^\s@\"'<>,;:()\[\]]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){1,8}")


def mask_email(email: str) -> str:
    """``ann@example.com`` → ``a***@example.com``; keeps logs useful and private."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"


def redact(text: str, limit: int | None = None) -> str:
    """``text`` with anything shaped like an email masked, then cut to ``limit`` characters.

    Masked first, then cut: a cut can never leave part of an address unmasked.
    """
    masked = _EMAIL.sub(lambda m: mask_email(m.group(0)), text)
    if limit is None or len(masked) <= limit:
        return masked
    return f"{masked[: limit - 3]}..."


def show(value: object, limit: int = 40) -> str:
    """A short, email-masked rendering of a value for an error message."""
    return redact(repr(value), limit)
