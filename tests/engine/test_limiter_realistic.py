"""Many workers polling one realistic account through the real client and the shared limiter.

The sandbox runs its realistic profile (a random per-account window phase, per-call latency
drawn from ``lognormal:0.05,0.5,2``) with another integration spending 15 % of every
window, at ``--speed 10`` so that a minute window lasts 6 s (latency stays in real seconds,
so it weighs ten times more against each window than on a real account). Twelve workers,
each with its own HTTP session and its own limiter object on the shared Redis, poll one bulk
import job (``get_bulk_import_profiles_job``: 10/s, 150/min) as fast as the limiter lets them.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest
import redis

from sandbox.identity import fingerprint
from sandbox.server import SandboxServer
from sandbox.testing import SandboxClient, profiles_payload
from worker.klaviyo import bulk_import
from worker.klaviyo.client import KlaviyoClient
from worker.klaviyo.errors import RateLimited
from worker.limits.gate import Gate, Throttled
from worker.limits.ratelimit import RateLimiter

SPEED = 10
KEY = "pk_limiter_realistic"
WORKERS = 12
SECONDS = 40.0
FOREIGN = 0.15
STEADY = 150  # get_bulk_import_profiles_job per minute


@dataclass
class Tally:
    answered: list[float] = field(default_factory=list)  # real times of accepted calls
    throttled_by_klaviyo: int = 0
    waits: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _worker(base_url: str, redis_url: str, job_id: str, deadline: float, tally: Tally) -> None:
    limiter = RateLimiter(redis.Redis.from_url(redis_url), prefix="rlx", speed=SPEED)
    client = KlaviyoClient(KEY, base_url=base_url, revision="2026-07-15").limited(Gate(limiter))
    try:
        while time.monotonic() < deadline:
            try:
                bulk_import.get_bulk_import(client, job_id)
            except Throttled as throttled:
                with tally.lock:
                    tally.waits += 1
                time.sleep(min(throttled.wait, 0.05))
                continue
            except RateLimited:
                with tally.lock:
                    tally.throttled_by_klaviyo += 1
                continue
            with tally.lock:
                tally.answered.append(time.time())
    finally:
        client.close()


@pytest.mark.serial  # figures: no 429 and the share used depend on having the machine
def test_twelve_workers_meet_no_429_and_use_90_percent_of_what_the_foreign_client_leaves(
    redis_url: str,
) -> None:
    # given: a realistic account with a foreign client, and one bulk import job on it
    server = SandboxServer(speed=SPEED, foreign_share=FOREIGN).start()
    try:
        assert server.realism.window_phase == "random" and not server.realism.latency.zero
        job_id = SandboxClient(server.url, api_key=KEY).bulk_import(
            profiles_payload(["limiter@example.com"]))
        tally = Tally()
        deadline = time.monotonic() + SECONDS
        # when
        threads = [threading.Thread(target=_worker,
                                    args=(server.url, redis_url, job_id, deadline, tally))
                   for _ in range(WORKERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(SECONDS + 30)
        # then: not one of our calls was refused by the account ...
        stats = server.sandbox.stats.snapshot()["accounts"][fingerprint(KEY)]
        assert tally.throttled_by_klaviyo == 0
        assert stats["throttled"] == 0
        # ... and each whole window carried >= 90 % of the 127.5 calls the foreign client leaves
        phase = server.sandbox.limiter.phase(fingerprint(KEY))[1]
        per_window = Counter(int((t * SPEED - phase) // 60) for t in tally.answered)
        whole = [per_window[w] for w in sorted(per_window)[2:-1]]
        left = STEADY * (1 - FOREIGN)
        print(f"\nper window (6 s each, first two and the last left out): {whole}; "
              f"foreign leaves {left}; our waits {tally.waits}")
        assert len(whole) >= 4
        assert min(whole) >= 0.9 * left, per_window
    finally:
        server.stop()
