"""Settings fail fast: one readable line, a non-zero exit, and never a secret in the output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port

SECRET = "pk_live_supersecret_123456"


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "KLAVIYO_API_KEY": SECRET, **env}
    return subprocess.run(
        [sys.executable, "-m", "console.cli", *args],
        env=full_env,
        text=True,
        capture_output=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    "command", [["jobs", "validate"], ["status"], ["health"], ["dlq", "list", "x"]]
)
def test_an_invalid_base_url_stops_every_command_with_one_line(command: list[str]) -> None:
    """`KLAVIYO_BASE_URL=notaurl` gives exit 2 and one stderr line naming the variable."""
    result = run_cli(*command, KLAVIYO_BASE_URL="notaurl")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "KLAVIYO_BASE_URL" in lines[0]
    assert SECRET not in result.stdout + result.stderr


def test_a_key_that_is_not_a_private_key_is_refused_without_echoing_it() -> None:
    """A malformed key is named as KLAVIYO_API_KEY; its value is never printed."""
    result = run_cli("jobs", "list", KLAVIYO_API_KEY="sk_wrong_value_987")
    assert result.returncode == 2 and "KLAVIYO_API_KEY" in result.stderr
    assert "sk_wrong_value_987" not in result.stdout + result.stderr


def test_a_missing_jobs_file_is_one_line_not_a_traceback(tmp_path: object) -> None:
    """A user mistake never shows a traceback."""
    result = run_cli("jobs", "validate", EXPORT_JOBS_FILE="/nonexistent/jobs.toml")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert SECRET not in result.stdout + result.stderr


def test_a_command_error_run_as_a_module_is_one_line(tmp_path: Path) -> None:
    """``python -m console.cli`` catches its commands' UserError too: one line, exit 2."""
    jobs = tmp_path / "jobs.toml"
    jobs.write_text('[[jobs]]\nid = "vip"\naudiences = ["vip"]\n', encoding="utf-8")
    result = run_cli("start", "nojob", EXPORT_JOBS_FILE=str(jobs))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1



@pytest.mark.parametrize(("command", "redis_url"), [
    (["start", "vip"], "redis://127.0.0.1:{port}/0"),
    (["start", "vip"], "sentinel://127.0.0.1:{port}"),  # no master: as during a failover
    (["status"], "redis://127.0.0.1:{port}/0"),
    (["pause", "vip"], "redis://127.0.0.1:{port}/0"),
])
def test_a_redis_that_does_not_answer_is_one_line_that_asks_for_a_rerun(
        tmp_path: Path, command: list[str], redis_url: str) -> None:
    """Redis down, or no master to be found: exit 2, one line, no traceback."""
    jobs = tmp_path / "jobs.toml"
    jobs.write_text('[[jobs]]\nid = "vip"\naudiences = ["vip"]\nbackfill = false\n',
                    encoding="utf-8")
    result = run_cli(*command, EXPORT_JOBS_FILE=str(jobs),
                     REDIS_URL=redis_url.format(port=free_port()))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("klaviyo-export: cannot reach Redis"), lines
    assert lines[0].endswith("rerun to resume")
