"""Command-line options of the sandbox, shared by ``klaviyo-export sandbox`` and
``python -m sandbox``."""

from __future__ import annotations

import argparse
from pathlib import Path

from sandbox.server import serve_forever


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options: where to listen, how fast time runs, where Lytics members come from."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8787, help="port to listen on")
    parser.add_argument("--speed", type=float, default=1.0,
                        help="shorten every rate-limit window N times (1 = Klaviyo's limits)")
    parser.add_argument("--job-delay", type=float, default=0.2,
                        help="seconds (real) until an async job completes")
    parser.add_argument("--no-validate", action="store_true",
                        help="skip OpenAPI request validation (caps still apply)")
    parser.add_argument("--lytics-members", type=Path, default=None, metavar="DIR",
                        help="directory of <segment>.jsonl files for the Lytics scan API")
    parser.add_argument("--lytics-token", default=None,
                        help="the only Lytics token accepted (default: any non-empty token)")
    parser.add_argument("--log-level", default="info", help="uvicorn log level")


def check(args: argparse.Namespace) -> str | None:
    """A problem with the options, in one line, or None."""
    if not args.speed > 0:
        return "--speed must be > 0"
    if args.job_delay < 0:
        return "--job-delay must be ≥ 0"
    if args.lytics_members is not None and not args.lytics_members.is_dir():
        return f"--lytics-members {args.lytics_members} is not a directory"
    return None


def serve(args: argparse.Namespace) -> int:
    """Run until interrupted."""
    serve_forever(args.host, args.port, args.speed, job_delay=args.job_delay,
                  validate=not args.no_validate, lytics_members=args.lytics_members,
                  lytics_token=args.lytics_token, log_level=args.log_level)
    return 0
