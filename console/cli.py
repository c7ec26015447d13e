"""``klaviyo-export``: the command line. Each command lives in ``console/commands/<name>.py``.

A command module exposes ``register(subparsers)``, which adds its parser and sets
``func(args) -> int``. A user mistake (``UserError``, ``ConfigurationError``) and a Redis
that does not answer (down, or failing over) print one line to stderr and exit 2; nothing
prints a traceback or a secret.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

import redis

from core.settings import ConfigurationError, load_settings
from worker.ops import observability

COMMANDS = ("jobs", "start", "status", "audit", "explain", "brake", "enqueue", "dlq",
            "health", "webhook", "sandbox", "lifecycle", "metrics", "runs")


class UserError(Exception):
    """Something the user can fix; the message is shown as is."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="klaviyo-export",
        description="Keep Klaviyo lists equal to Lytics audiences.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"console.commands.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = load_settings()  # fail fast, whatever the command, before any module reads it
    except ConfigurationError as exc:
        print(f"klaviyo-export: {exc}", file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    observability.init_sentry(settings, component=f"cli:{args.command}")
    try:
        return int(args.func(args))
    except (UserError, ConfigurationError) as exc:
        print(f"klaviyo-export: {exc}", file=sys.stderr)
        return 2
    except redis.RedisError as exc:  # redis-py's messages name hosts, never passwords
        print(f"klaviyo-export: cannot reach Redis at REDIS_URL ({type(exc).__name__}: {exc}); "
              "rerun to resume", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    # ``python -m console.cli`` runs this file as ``__main__`` while the commands import
    # ``console.cli``: run that module's main, so the UserError it catches is theirs
    from console.cli import main as _main

    sys.exit(_main())
