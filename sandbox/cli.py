"""Command-line options of the sandbox, shared by ``klaviyo-export sandbox`` and
``python -m sandbox``."""

from __future__ import annotations

import argparse
from pathlib import Path

from sandbox.realism import PROFILES, Realism, build, parse_knob
from sandbox.server import serve_forever


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options: where to listen, how fast time runs, where Lytics members come from."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8787, help="port to listen on")
    parser.add_argument("--speed", type=float, default=1.0,
                        help="shorten every rate-limit window N times (1 = Klaviyo's limits)")
    parser.add_argument("--profile", choices=PROFILES, default="realistic",
                        help="realistic: a real Klaviyo account's behaviour (default); "
                             "fast: instant jobs, single opt-in, no latency")
    parser.add_argument("--job-delay", default=None, metavar="DELAY",
                        help="real seconds until an async job completes: S, "
                             "lognormal:MEDIAN,SIGMA[,CAP] or uniform:LOW,HIGH "
                             "(default: the profile's)")
    parser.add_argument("--knob", action="append", default=[], metavar="NAME=VALUE",
                        help="override one behaviour knob (docs/sandbox.md lists them); "
                             "repeatable")
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
    try:
        realism(args)
    except ValueError as exc:
        return str(exc)
    if args.lytics_members is not None and not args.lytics_members.is_dir():
        return f"--lytics-members {args.lytics_members} is not a directory"
    return None


def realism(args: argparse.Namespace) -> Realism:
    """The profile and knobs the options choose; ValueError names a bad one."""
    knobs = dict(parse_knob(text) for text in args.knob)
    if args.job_delay is not None:
        knobs["job_delay"] = args.job_delay
    return build(args.profile, **knobs)


def serve(args: argparse.Namespace) -> int:
    """Run until interrupted."""
    serve_forever(args.host, args.port, args.speed, realism=realism(args),
                  validate=not args.no_validate, lytics_members=args.lytics_members,
                  lytics_token=args.lytics_token, log_level=args.log_level)
    return 0
