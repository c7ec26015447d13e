"""The desired state's codes have one owner, ``worker.state.codes``, and the Lua scripts get
them from it: a header of Lua locals, never strings of their own."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import redis

from core import keys
from worker.state import codes, counters
from worker.state.desired import _script

LUA = Path(codes.__file__).with_name("lua")
SCRIPTS = sorted(LUA.glob("*.lua"))
STRING = re.compile(r"'((?:[^'\\]|\\.)*)'")
OWNED = {*codes.APPLIED_CODES, *codes.EVENT_CODES, codes.RETRY, codes.FIELDS_SEP,
         codes.EVENT_SEP, *keys.LUA_SUFFIXES, counters.ADDED, counters.REMOVED,
         counters.REMOVE_UNCONFIRMED, "\\31"}


def _code(path: Path) -> str:
    """A script without its comments."""
    return "\n".join(line.split("--", 1)[0] for line in path.read_text().splitlines())


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_no_script_spells_a_code_itself(path: Path) -> None:
    """A code, key suffix or counter written as a string in a script would be a second owner."""
    literals = set(STRING.findall(_code(path)))
    assert not (literals & OWNED), f"{path.name} spells {sorted(literals & OWNED)}: use the header"


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_every_upper_case_name_a_script_uses_is_in_the_header(path: Path) -> None:
    used = set(re.findall(r"\b([A-Z][A-Z0-9_]+)\b", STRING.sub("''", _code(path))))
    known = {*codes.lua_constants(), "ARGV", "KEYS"}
    assert used <= known, sorted(used - known)


def test_the_header_gives_lua_the_python_values(redis_client: redis.Redis) -> None:
    """Each local of the header holds exactly the value of the Python constant."""
    names = list(codes.lua_constants())
    script = codes.lua_header() + "return {" + ", ".join(names) + "}"
    values = [v.decode() if isinstance(v, bytes) else v for v in redis_client.eval(script, 0)]
    assert dict(zip(names, values, strict=True)) == codes.lua_constants()
    assert codes.lua_constants()["APPLIED_IN"] == codes.APPLIED_IN == "in"
    assert codes.lua_constants()["OUT_UNCONFIRMED"] == "out?"


def test_every_script_is_built_on_the_header() -> None:
    assert _script("split", "release").startswith(codes.lua_header())
