"""The producer side of a (c) run, as its own process: publish ``--profiles`` enter events.

    python -m bench.produce --redis URL --prefix P --job J --audience A --profiles N [--body 1000]

Events go through ``core.dispatch.send_events`` in bodies of ``--body``, as fast as the
broker takes them (the real-time path). Prints one JSON line: seconds, messages, peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import orjson

from core.dispatch import send_events
from core.events import Action, AudienceEvent
from core.settings import Settings
from worker.celery_app import create_app


def email(prefix: str, i: int) -> str:
    return f"{prefix}{i}@bench.example"


def field_values(i: int) -> dict[str, object]:
    """Person ``i``'s three mapped fields (``bench.engine.FIELDS``)."""
    return {"first_name": f"N{i}", "city": "Oslo", "ltv": i}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--job", required=True)
    parser.add_argument("--audience", required=True)
    parser.add_argument("--profiles", type=int, required=True)
    parser.add_argument("--body", type=int, default=1000)
    parser.add_argument("--emails", default="u", help="email local-part prefix")
    parser.add_argument("--action", choices=("enter", "exit"), default="enter")
    parser.add_argument("--fields", action="store_true", help="three mapped fields per profile")
    args = parser.parse_args()
    app = create_app(Settings(redis_url=args.redis, key_prefix=args.prefix))  # type: ignore[arg-type]
    first_publish = time.time()
    started = time.perf_counter()
    messages = 0
    for first in range(0, args.profiles, args.body):
        ts = time.time_ns()
        events = [
            AudienceEvent(
                audience=args.audience,
                action=Action.ENTER if args.action == "enter" else Action.EXIT,
                ts_ns=ts,
                profile={
                    "email": email(args.emails, i),
                    **(field_values(i) if args.fields else {}),
                },
            )
            for i in range(first, min(first + args.body, args.profiles))
        ]
        messages += send_events(app, args.job, events)
    seconds = time.perf_counter() - started
    app.close()
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        orjson.dumps(
            {
                "seconds": seconds,
                "messages": messages,
                "peak_rss": peak_kb * 1024,
                "first_publish": first_publish,
            }
        ).decode()
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
