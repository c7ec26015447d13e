"""Peak memory of the backfill producer streaming a 1,000,000-line JSON-lines file.

    uv run --frozen python bench/backfill_memory.py [--lines 1000000]

Generates the file in a temporary directory, starts a private ``redis-server`` and runs the
producer's whole path (read, chunk, write chunks to Redis, dispatch chords) with no workers.
Prints the process's peak RSS (``getrusage``) before and after streaming, and the rate.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_members(path: Path, lines: int) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for i in range(lines):
            bad = i % 997 == 5
            email = "not-an-email" if bad else f"user{i}@example.com"
            fh.write(
                f'{{"email": "{email}", "_uid": "u{i}", "first_name": "N{i}", '
                f'"segments": ["vip", "all"]}}\n'
            )


def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    server = shutil.which("redis-server")
    if server is None:
        sys.exit("redis-server is not installed")
    port = free_port()
    proc = subprocess.Popen(
        [
            server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    return proc, port


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        members = work / "members.jsonl"
        write_members(members, args.lines)
        (work / "jobs.toml").write_text(
            '[[jobs]]\nid = "bench"\naudiences = ["vip"]\nnew_list_opt_in = "single"\n'
            'field_map = { first_name = "first_name" }\n'
        )
        redis_proc, port = start_redis(work)
        os.environ.update(
            {
                "REDIS_URL": f"redis://127.0.0.1:{port}/0",
                "KEY_PREFIX": "bench",
                "EXPORT_JOBS_FILE": str(work / "jobs.toml"),
            }
        )
        try:
            return run(members, args.lines)
        finally:
            redis_proc.terminate()
            redis_proc.wait(timeout=10)


def run(members: Path, lines: int) -> int:
    sys.path.insert(0, str(ROOT))
    from producers.backfill.files import FileSource  # noqa: PLC0415 - after the env is set
    from producers.backfill.producer import Producer  # noqa: PLC0415
    from worker import runtime  # noqa: PLC0415
    from worker.celery_app import create_app  # noqa: PLC0415

    job = runtime.job("bench")
    before = peak_mb()
    started = time.perf_counter()
    producer = Producer(runtime.redis_client(), "bench", job, FileSource(members, job),
                        app=create_app())
    store = producer.run()
    elapsed = time.perf_counter() - started
    info = store.progress()
    print(f"lines: {lines:,}  chunks: {info['dispatched']}  segments: {info['segments']}")
    print(f"peak RSS before streaming: {before:.0f} MB, after: {peak_mb():.0f} MB")
    print(f"streamed in {elapsed:.1f} s ({lines / elapsed:,.0f} profiles/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
