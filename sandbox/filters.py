"""Klaviyo's ``filter`` query parameter, the subset the sandbox serves.

Grammar: ``equals(field,value)``, ``any(field,[v1,v2,...])``, the comparisons
``greater-than``, ``greater-or-equal``, ``less-than`` and ``less-or-equal`` (on fields
that allow them), combined with ``and(...)`` or commas. Values are quoted strings
('…' or "…"), or unquoted ISO 8601 dates for comparisons. Anything else is refused
with 400 naming the ``filter`` parameter, as Klaviyo does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from sandbox.errors import invalid

_TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\')'
                    r'|(?P<date>\d{4}-\d{2}-\d{2}(?:T[0-9:.]+(?:Z|[+-]\d{2}:?\d{2})?)?)'
                    r'|(?P<word>[A-Za-z_.-]+)|(?P<punct>[(),\[\]]))')
MEMBERSHIP = frozenset({"equals", "any"})
COMPARISONS = frozenset({"greater-than", "greater-or-equal", "less-than", "less-or-equal"})


@dataclass(frozen=True)
class Condition:
    """One ``equals``/``any`` test on one field."""

    field: str
    values: tuple[str, ...]
    op: str = "equals"  # "any" reads as equals-one-of; or one of COMPARISONS


Fields = set[str] | Mapping[str, frozenset[str]]


def parse_filter(text: str | None, fields: Fields) -> list[Condition]:
    """Conditions (all must hold); ``fields`` are the filterable fields (a set: each takes
    ``equals`` and ``any``; a mapping: field → the operators it takes)."""
    if not text:
        return []
    if not isinstance(fields, Mapping):
        fields = dict.fromkeys(fields, MEMBERSHIP)
    tokens = _tokens(text)
    conditions: list[Condition] = []
    pos = _expression(tokens, 0, fields, conditions)
    while pos < len(tokens) and tokens[pos] == ",":
        pos = _expression(tokens, pos + 1, fields, conditions)
    if pos != len(tokens):
        raise _bad(f"unexpected {tokens[pos]!r}")
    return conditions


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            if text[pos:].strip() == "":
                break
            raise _bad(f"cannot read {text[pos:pos + 20]!r}")
        out.append(match.group("str") or match.group("date") or match.group("word")
                   or match.group("punct"))
        pos = match.end()
    return out


def _expression(tokens: list[str], pos: int, fields: Mapping[str, frozenset[str]],
                out: list[Condition]) -> int:
    name = tokens[pos] if pos < len(tokens) else ""
    if pos + 1 >= len(tokens) or tokens[pos + 1] != "(":
        raise _bad(f"expected an operator at {name!r}")
    if name == "and":
        pos = _expression(tokens, pos + 2, fields, out)
        while tokens[pos:pos + 1] == [","]:
            pos = _expression(tokens, pos + 1, fields, out)
        return _expect(tokens, pos, ")")
    if name not in MEMBERSHIP | COMPARISONS:
        raise _bad(f"operator {name!r} is not supported here")
    field = tokens[pos + 2] if pos + 2 < len(tokens) else ""
    if field not in fields:
        raise _bad(f"{field!r} is not a filterable field here; use one of {sorted(fields)}")
    if name not in fields[field]:
        raise _bad(f"{field!r} takes {sorted(fields[field])}, not {name!r}")
    pos = _expect(tokens, pos + 3, ",")
    values: tuple[str, ...]
    if name == "any":
        values, pos = _array(tokens, pos)
    elif name in COMPARISONS:
        values, pos = (_date(tokens, pos),), pos + 1
    else:
        values, pos = (_string(tokens, pos),), pos + 1
    out.append(Condition(field, values, name))
    return _expect(tokens, pos, ")")


def _array(tokens: list[str], pos: int) -> tuple[tuple[str, ...], int]:
    pos = _expect(tokens, pos, "[")
    values: list[str] = []
    while pos < len(tokens) and tokens[pos] != "]":
        values.append(_string(tokens, pos))
        pos += 1
        if tokens[pos:pos + 1] == [","]:
            pos += 1
    return tuple(values), _expect(tokens, pos, "]")


def _string(tokens: list[str], pos: int) -> str:
    token = tokens[pos] if pos < len(tokens) else ""
    if len(token) < 2 or token[0] not in "'\"" or token[-1] != token[0]:
        raise _bad(f"expected a quoted string, got {token!r}")
    return re.sub(r"\\(.)", r"\1", token[1:-1])


def _date(tokens: list[str], pos: int) -> str:
    token = tokens[pos] if pos < len(tokens) else ""
    text = _string(tokens, pos) if token[:1] in ("'", '"') else token
    if not re.match(r"^\d{4}-\d{2}-\d{2}", text):
        raise _bad(f"expected a date-time, got {token!r}")
    return text


def _expect(tokens: list[str], pos: int, what: str) -> int:
    if pos >= len(tokens) or tokens[pos] != what:
        raise _bad(f"expected {what!r}")
    return pos + 1


def _bad(why: str) -> Exception:
    return invalid(f"Invalid filter: {why}.", parameter="filter")
