"""A bad setting stops every entry point the same way: one line naming it, exit 2.

Every field of ``Settings`` gets a value it must refuse (generated from the field, so a new
setting is covered without touching this file) and goes through the CLI's ``main`` in
process (fast); every entry point (CLI, worker, beat, Flower, demo, webhook, sandbox) runs as
a subprocess with one of the two settings the bug report named.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from console import cli
from core.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
CANDIDATES = ("-5", "not a value!", "maybe", "")
FREE_FORM = (SecretStr | None, Path)  # any string is a valid secret or path: nothing to refuse

ENTRY_POINTS = {
    "cli": ["-m", "console.cli", "status"],
    "worker": ["-m", "celery", "-A", "worker", "worker"],
    "beat": ["-m", "celery", "-A", "worker", "beat"],
    "flower": ["-m", "celery", "-A", "worker", "flower"],
    "demo": ["-m", "console.demo"],
    "webhook": ["-m", "console.cli", "webhook"],
    "sandbox": ["-m", "console.cli", "sandbox"],
}


def bad_value(name: str) -> str | None:
    """The first candidate ``Settings`` refuses for ``name`` (None if it accepts them all)."""
    for value in CANDIDATES:
        try:
            Settings.model_validate({name: value})
        except ValidationError as exc:
            if any(err["loc"] and err["loc"][0] == name for err in exc.errors()):
                return value
    return None


BAD = {name: bad_value(name) for name in Settings.model_fields}


def run(args: list[str], variable: str, value: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, variable: value}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, text=True,
                          capture_output=True, timeout=60, check=False)


def assert_one_line_naming(result: subprocess.CompletedProcess[str], variable: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1 and variable in lines[0], result.stderr[-2000:]
    assert "Traceback" not in result.stdout + result.stderr


def test_every_setting_without_a_bad_value_is_free_form() -> None:
    """Only secrets and paths accept any string; every other setting has a case below."""
    untested = [n for n, v in BAD.items() if v is None]
    assert all(Settings.model_fields[n].annotation in FREE_FORM for n in untested), untested


@pytest.mark.parametrize("name", [n for n, v in BAD.items() if v is not None])
def test_every_bad_setting_stops_the_cli_with_one_line(
    name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    value = BAD[name]
    assert value is not None
    monkeypatch.setenv(name.upper(), value)
    load_settings.cache_clear()
    try:
        code = cli.main(["status"])
    finally:
        load_settings.cache_clear()
    out = capsys.readouterr()
    assert_one_line_naming(subprocess.CompletedProcess([], code, out.out, out.err), name.upper())


@pytest.mark.parametrize(
    "entry,variable,value",
    [
        *[(entry, "HEARTBEAT_INTERVAL_SECONDS", "-1") for entry in ENTRY_POINTS],
        ("worker", "FLUSH_BATCH_SIZE", "-5"),
    ],
)
def test_every_entry_point_stops_with_one_line(entry: str, variable: str, value: str) -> None:
    assert_one_line_naming(run(ENTRY_POINTS[entry], variable, value), variable)
