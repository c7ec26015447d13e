"""``klaviyo-export metrics [--host H] [--port P]``: serve Prometheus metrics without the receiver.

The same text as the webhook receiver's ``/metrics`` (``core.metrics``: every value read from
Redis at each scrape, so it is right whatever the number of workers), for deployments that
do not run the receiver. The jobs file is re-read when it changes (the last good one is kept).
"""

from __future__ import annotations

import argparse
import threading

from prometheus_client import start_http_server

from console.commands.webhook import port
from core import redisconn
from core.jobs import JobsFile
from core.jobswatch import JobsWatcher
from core.metrics import RedisCollector, registry_for
from core.settings import load_settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("metrics", help="serve Prometheus metrics (GET /metrics)",
                            description="Serve the Prometheus metrics of docs/metrics.md.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=port, default=9808, help="TCP port (default 9808)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    watcher: JobsWatcher[JobsFile] = JobsWatcher(settings.export_jobs_file, lambda jobs: jobs)
    watcher.current()  # a bad file at start: one line, exit 2 (ConfigurationError)
    client = redisconn.client(settings, socket_connect_timeout=2, socket_timeout=5)
    collector = RedisCollector(client, settings.key_prefix,
                               lambda: [j.id for j in watcher.current().jobs],
                               speed=settings.rate_limit_speed)
    server, thread = start_http_server(args.port, args.host, registry=registry_for(collector))
    print(f"serving metrics on http://{args.host}:{args.port}/metrics", flush=True)
    try:
        threading.Event().wait()
    finally:
        server.shutdown()
        thread.join(timeout=5)
    return 0
