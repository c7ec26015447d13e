"""How a worker and beat are launched: one definition for the demo, the tests and the benchmark.

Production (Compose, ``make worker``) runs the same flags: prefork, every queue, no gossip or
mingle (they chatter on the broker and slow start-up), task events on for Flower.
"""

from __future__ import annotations

import sys

from worker.ops.schedule import QUEUES


def worker_argv(
    name: str, concurrency: int = 2, queues: str = ",".join(QUEUES), python: str = sys.executable
) -> list[str]:
    """``celery -A worker worker`` with this project's flags, as a subprocess argument list."""
    return [
        python,
        "-m",
        "celery",
        "-A",
        "worker",
        "worker",
        "-P",
        "prefork",
        "-c",
        str(concurrency),
        "-Q",
        queues,
        "-n",
        f"{name}@%h",
        "-E",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "-l",
        "INFO",
    ]


def beat_argv(python: str = sys.executable) -> list[str]:
    """``celery -A worker beat`` (RedBeat keeps the schedule and the single-beat lock in Redis)."""
    return [python, "-m", "celery", "-A", "worker", "beat", "-l", "INFO"]
