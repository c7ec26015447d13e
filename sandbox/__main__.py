"""``python -m sandbox``: the sandbox without the project's settings."""

from __future__ import annotations

import argparse
import sys

from sandbox.cli import add_arguments, check, serve


def main() -> int:
    """Parse options and serve."""
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args()
    problem = check(args)
    if problem:
        parser.error(problem)
    return serve(args)


if __name__ == "__main__":
    sys.exit(main())
