"""`klaviyo-export sandbox`: a local Klaviyo (and Lytics scan API) on loopback.

See docs/sandbox.md. Options are defined in ``sandbox.cli`` so ``python -m sandbox``
accepts the same ones.
"""

from __future__ import annotations

import argparse

from console.cli import UserError
from sandbox.cli import add_arguments, check, serve


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "sandbox",
        help="run a local Klaviyo with its real limits and failures (and Lytics' scan API)",
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    problem = check(args)
    if problem:
        raise UserError(problem)
    return serve(args)
