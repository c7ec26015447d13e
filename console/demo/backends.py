"""What the demo runs against: a Redis, and Klaviyo (an account, or the sandbox)."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from console.demo.audience import split_by_segment
from console.demo.processes import (
    DemoError,
    Processes,
    choose_redis,
    free_port,
    http_ok,
    redis_answers,
    redis_server_argv,
    wait_for,
)
from core.redact import mask_email

INSTALL_REDIS = (
    "No Redis: REDIS_URL is not set or does not answer, and redis-server is not installed.\n"
    "Install it (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis)\n"
    "or point REDIS_URL at a running Redis, then run `make run` again."
)
LOOPBACK = frozenset({"localhost", "::1", "[::1]"})
RESERVED_DOMAINS = frozenset({"example.com", "example.net", "example.org"})
RESERVED_SUFFIXES = (".example", ".test", ".invalid", ".localhost", ".example.com",
                     ".example.net", ".example.org")
REAL_ACCOUNT_REFUSED = (
    "KLAVIYO_API_KEY is set and KLAVIYO_BASE_URL ({base}) is a real Klaviyo: the demo will not "
    "write to a real account by default, since subscribing sends confirmation emails (double "
    "opt-in) and the list may trigger flows.\n"
    "Unset KLAVIYO_API_KEY to run against the sandbox, or set DEMO_ALLOW_REAL_KLAVIYO=true to "
    "write the sample audience (reserved example.com addresses only) to that account.")
REAL_ACCOUNT_WARNING = (
    "Klaviyo: DEMO_ALLOW_REAL_KLAVIYO is set: only reserved example.com addresses are sent, so "
    "no person receives anything; Klaviyo may still send confirmation emails to them (they "
    "bounce, and bounces count against the account's sending reputation), and any flow the "
    "list \"Lytics demo\" triggers runs for them: use a test account")
# Short periods for the sandbox only: against a real account the production defaults apply.
SANDBOX_KNOBS = {
    "FLUSH_INTERVAL_SECONDS": "0.5",
    "SUBSCRIBE_SETTLE_SECONDS": "1",
    "POLL_INTERVAL_SECONDS": "0.5",
    "SWEEP_INTERVAL_SECONDS": "2",
}


def start_redis(environ: Mapping[str, str], procs: Processes) -> str:
    """``REDIS_URL`` when it answers, else a private redis-server the demo starts."""
    url = choose_redis(environ)
    if url:
        print("Redis: using REDIS_URL (it answers PING)", flush=True)
        return url
    if environ.get("REDIS_URL"):
        print("Redis: REDIS_URL does not answer; starting a private redis-server", flush=True)
    binary = shutil.which("redis-server")
    if binary is None:
        raise DemoError(INSTALL_REDIS)
    port = free_port()
    data = procs.workdir / "redis"
    data.mkdir()
    child = procs.spawn("redis", redis_server_argv(binary, port, data), environ)
    url = f"redis://127.0.0.1:{port}/0"
    wait_for(lambda: redis_answers(url) or not child.alive(), 15, "redis-server to answer")
    if not child.alive():
        raise DemoError(f"redis-server exited:\n{child.tail()}")
    print(f"Redis: private redis-server on 127.0.0.1:{port} (appendonly, data in {data})",
          flush=True)
    return url



def is_local(base_url: str) -> bool:
    """Whether ``base_url`` is on this machine (the sandbox), not a real Klaviyo."""
    host = (urlsplit(base_url).hostname or "").lower()
    return host in LOOPBACK or host.startswith("127.")


def is_reserved(email: str) -> bool:
    """Whether the address is on a domain nobody can own (RFC 2606, RFC 6761)."""
    domain = email.rsplit("@", 1)[-1].lower()
    return domain in RESERVED_DOMAINS or domain.endswith(RESERVED_SUFFIXES)


def check_real_account(environ: Mapping[str, str], emails: Iterable[str], *,
                       allow_real: bool) -> None:
    """Refuse to write to a real Klaviyo account unless asked to, and even then refuse any
    address that could reach a person: a subscribe sends confirmation emails (double opt-in)
    and the list may trigger flows."""
    base = environ.get("KLAVIYO_BASE_URL", "https://a.klaviyo.com")
    if is_local(base):
        return
    if not allow_real:
        raise DemoError(REAL_ACCOUNT_REFUSED.format(base=base))
    real = sorted({e for e in emails if not is_reserved(e)})
    if real:
        raise DemoError(f"the demo refuses to send {len(real)} address(es) outside the reserved "
                        f"example domains to a real Klaviyo account (first: "
                        f"{mask_email(real[0])}): they may belong to real people")


def start_klaviyo(environ: Mapping[str, str], procs: Processes, profiles: list[dict[str, Any]],
                  prefix: str) -> tuple[dict[str, str], str | None]:
    """The settings for the account written to, and the sandbox's URL when it was started.

    With ``KLAVIYO_API_KEY`` set the demo writes to that account and starts nothing (a real
    Klaviyo was checked first: :func:`check_real_account`); without it, the sandbox (Klaviyo
    and Lytics' scan API) serves the sample audience.
    """
    if environ.get("KLAVIYO_API_KEY"):
        base = environ.get("KLAVIYO_BASE_URL", "https://a.klaviyo.com")
        print(f"Klaviyo: KLAVIYO_API_KEY is set, so the demo writes to {base}: "
              "a list named \"Lytics demo\" in that account", flush=True)
        if not is_local(base):
            print(REAL_ACCOUNT_WARNING, flush=True)
        return {}, None
    members = procs.workdir / "lytics-members"
    members.mkdir()
    for segment, rows in split_by_segment(profiles).items():
        (members / f"{segment}.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    port = free_port()
    child = procs.spawn("sandbox", [
        sys.executable, "-m", "sandbox", "--host", "127.0.0.1", "--port", str(port),
        "--lytics-members", str(members), "--log-level", "warning"], environ)
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: http_ok(f"{url}/_sandbox/faults") or not child.alive(), 30,
             "the sandbox to listen")
    if not child.alive():
        raise DemoError(f"the sandbox exited:\n{child.tail()}")
    print(f"Klaviyo: no KLAVIYO_API_KEY, so the demo runs against the sandbox at "
          f"{url} (a local Klaviyo with its real limits)", flush=True)
    env = {"KLAVIYO_BASE_URL": url, "KLAVIYO_API_KEY": f"pk_demo_{prefix}",
           "LYTICS_BASE_URL": url, "LYTICS_API_TOKEN": "demo-lytics-token",
           **{k: environ.get(k, v) for k, v in SANDBOX_KNOBS.items()}}
    return env, url

