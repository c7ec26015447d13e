"""The codes of the desired state, owned here and handed to the Lua scripts.

Every script of ``worker/state/lua/`` runs after :func:`lua_header`, which defines each code
below (and each key suffix of ``core.keys``, each counter the scripts add to) as a Lua
local of the same name; the scripts use those names, never the strings (a test checks).

What Klaviyo was last told about a user, the ``applied`` hash (docs/architecture.md):

- ``in|<fields_ts>`` (:data:`APPLIED_IN`): subscribed (or force-added) with those fields, and
  on the list: counted in ``added``.
- ``wait|<fields_ts>`` (:data:`APPLIED_WAIT`): a subscribe to a double opt-in list was accepted
  and the person has not confirmed yet: counted in ``awaiting_confirmation``, not in ``added``,
  until the list shows them (``worker.engine.confirm``), when it becomes ``in``.
- ``try|<fields_ts>`` (:data:`APPLIED_TRY`): a subscribe or force-add is being sent, or its
  outcome is unknown (a 5xx, a dropped connection, a crash): Klaviyo *may* have been told.
- ``out`` (:data:`OUT`): removed from the list.
- ``outw`` (:data:`OUT_AWAITING`): left before confirming. Klaviyo has no way to cancel the
  confirmation email already sent; should they confirm later, the list shows them and the
  confirmation pass has them removed again.
- ``out0`` (:data:`OUT_NO_PROFILE`): nothing to remove: never told to subscribe, no profile.
- ``out?`` (:data:`OUT_UNCONFIRMED`): no profile appeared within ``REMOVAL_WAIT_SECONDS``.

A release also takes :data:`RETRY` (back to pending) or :data:`FORGET` (drop the claim only).

Per (user, audience) the desired state is ``<code>:<ts_ns>``, the code of the newest event:
:data:`ENTER` (``E``), :data:`EXIT` (``X``); :data:`CHANGE` (``C``) carries fields only.
"""

from __future__ import annotations

from core import keys
from worker.state import counters

APPLIED_IN = "in"
APPLIED_WAIT = "wait"
APPLIED_TRY = "try"
OUT = "out"  # every removal code starts so
OUT_AWAITING = "outw"
OUT_NO_PROFILE = "out0"
OUT_UNCONFIRMED = "out?"
RETRY = "retry"
FORGET = ""
FIELDS_SEP = "|"  # between an ``in``/``try`` code and its fields' timestamp

ENTER = "E"
EXIT = "X"
CHANGE = "C"
EVENT_SEP = ":"  # between an event code and its timestamp

ITEM_SEP = "\x1f"  # between the items of a script's one list argument

APPLIED_CODES = (APPLIED_IN, APPLIED_WAIT, APPLIED_TRY, OUT, OUT_AWAITING, OUT_NO_PROFILE,
                 OUT_UNCONFIRMED)
EVENT_CODES = (ENTER, EXIT, CHANGE)


def applied_code(code: str, fields_ts: str) -> str:
    """An ``in`` or ``try`` value: the code with the fields it carries."""
    return f"{code}{FIELDS_SEP}{fields_ts}"


def _lua_string(value: str) -> str:
    return "'" + "".join(c if c.isprintable() and c not in "'\\" else f"\\{ord(c)}"
                         for c in value) + "'"


def lua_constants() -> dict[str, str]:
    """The Lua locals every script gets: name → value."""
    return {
        "APPLIED_IN": APPLIED_IN, "APPLIED_WAIT": APPLIED_WAIT, "APPLIED_TRY": APPLIED_TRY,
        "OUT": OUT, "OUT_AWAITING": OUT_AWAITING, "OUT_NO_PROFILE": OUT_NO_PROFILE,
        "OUT_UNCONFIRMED": OUT_UNCONFIRMED,
        "RETRY": RETRY, "FORGET": FORGET, "FIELDS_SEP": FIELDS_SEP,
        "ENTER": ENTER, "EXIT": EXIT, "CHANGE": CHANGE, "EVENT_SEP": EVENT_SEP,
        "ITEM_SEP": ITEM_SEP,
        "K_USER": keys.USER, "K_FIELDS": keys.FIELDS, "K_PENDING": keys.PENDING,
        "K_INFLIGHT": keys.INFLIGHT, "K_SETTLING": keys.SETTLING, "K_APPLIED": keys.APPLIED,
        "K_REMOVAL_WAITS": keys.REMOVAL_WAITS, "K_DRIFT": keys.DRIFT, "K_COUNTERS": keys.COUNTERS,
        "K_ATTRS_PENDING": keys.ATTRS_PENDING, "K_ATTRS_INFLIGHT": keys.ATTRS_INFLIGHT,
        "K_APPLIED_AT": keys.APPLIED_AT,
        "C_ADDED": counters.ADDED, "C_REMOVED": counters.REMOVED,
        "C_AWAITING": counters.AWAITING,
        "C_REMOVE_UNCONFIRMED": counters.REMOVE_UNCONFIRMED,
    }


def lua_header() -> str:
    """The Lua that defines :func:`lua_constants`, prepended to every script."""
    return "".join(f"local {name} = {_lua_string(value)}\n"
                   for name, value in lua_constants().items())
