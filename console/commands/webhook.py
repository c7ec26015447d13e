"""``klaviyo-export webhook``: run the Lytics webhook receiver under uvicorn.

Every job needs a token (``WEBHOOK_TOKEN`` or its ``webhook_token_env``) unless
``--insecure-no-auth`` is given. The receiver re-reads the jobs file when it changes (a bad
version is logged and the last good one kept); a bad file at start stops it with one line.
uvicorn's access log stays off: it would print query strings, and Lytics may send the token
as ``?token=``.
"""

from __future__ import annotations

import argparse
import logging

import uvicorn

from core import redisconn
from core.settings import load_settings
from producers.webhook import create_app
from worker.celery_app import create_app as create_celery_app


def port(text: str) -> int:
    value = int(text) if text.isdigit() else -1
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {text!r}")
    return value


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("webhook", help="run the Lytics webhook receiver",
                            description="Serve POST /webhooks/lytics/{job_id} (docs at /docs).")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=port, default=8000, help="TCP port (default 8000)")
    parser.add_argument("--insecure-no-auth", action="store_true",
                        help="jobs without a token accept any request (local tests only)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    client = redisconn.client(settings, socket_connect_timeout=2, socket_timeout=5)
    app = create_app(settings, settings.export_jobs_file, create_celery_app(settings), client,
                     insecure_no_auth=args.insecure_no_auth)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    uvicorn.run(app, host=args.host, port=args.port, access_log=False, log_level="info")
    return 0
