"""``make run`` never messages real people: a real Klaviyo account is refused unless asked
for (``DEMO_ALLOW_REAL_KLAVIYO=true``), and even then only reserved example addresses go."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from console.demo import audience, backends, processes
from worker.engine.normalize import normalize_email

ROOT = Path(__file__).resolve().parents[2]
REAL = {"KLAVIYO_API_KEY": "pk_live_0123456789", "KLAVIYO_BASE_URL": "https://a.klaviyo.com"}


def shipped_emails() -> list[str]:
    profiles = audience.read_profiles(audience.SAMPLE_AUDIENCE)
    live = json.loads(audience.LIVE_EVENTS.read_text(encoding="utf-8"))
    raw = [p.get("email") for p in profiles] + [b["data"].get("email") for b in live]
    return [e for e in (normalize_email(v) for v in raw) if e]


def test_make_run_with_a_real_key_refuses_before_starting_anything(tmp_path: Path) -> None:
    env = {**os.environ, **REAL, "RUN_ONCE": "1", "TMPDIR": str(tmp_path)}
    env.pop("DEMO_ALLOW_REAL_KLAVIYO", None)
    done = subprocess.run([sys.executable, "-m", "console.demo"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "DEMO_ALLOW_REAL_KLAVIYO=true" in done.stderr
    assert "confirmation emails" in done.stderr
    assert "Redis:" not in done.stdout and "Klaviyo:" not in done.stdout  # nothing started


def test_the_sandbox_needs_no_flag() -> None:
    local = {"KLAVIYO_API_KEY": "pk_x", "KLAVIYO_BASE_URL": "http://127.0.0.1:8787"}
    backends.check_real_account(local, ["someone@gmail.com"], allow_real=False)
    assert backends.is_local("http://localhost:9") and not backends.is_local(
        "https://a.klaviyo.com")


def test_asked_for_only_the_shipped_reserved_addresses_are_sent() -> None:
    emails = shipped_emails()
    assert len(emails) > 1900 and all(backends.is_reserved(e) for e in emails)
    backends.check_real_account(REAL, emails, allow_real=True)


def test_asked_for_an_address_that_could_reach_a_person_is_refused() -> None:
    with pytest.raises(processes.DemoError, match="reserved example domains") as refused:
        backends.check_real_account(REAL, [*shipped_emails(), "ann.lee@gmail.com"],
                                    allow_real=True)
    assert "ann.lee@gmail.com" not in str(refused.value)  # masked, as every log is
    for domain in ("example.com", "shop.example", "x.test", "y.invalid"):
        assert backends.is_reserved(f"a@{domain}")
    for domain in ("gmail.com", "example.co", "notexample.com"):
        assert not backends.is_reserved(f"a@{domain}")
