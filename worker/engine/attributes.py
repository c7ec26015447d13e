"""Send queued mapped fields in bulk imports of up to 10,000 profiles, apart from subscribes.

A flush queues the members whose fields Klaviyo has not heard (``worker.state.attributes``)
and asks for a drain with :func:`request`: at once when a full import is waiting, else after
``attribute_wait_seconds`` (so a trickle of live changes still goes out in one import, and a
backfill's imports are full). :func:`drain` runs in its own task, so a subscribe never waits
for an import, and an import the limiter puts off holds back no membership call.

Imports of attributes carry no list: they change no membership and hold nobody; their
per-profile failures are collected by the poll (``worker.engine.imports``) as dead letters.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from contract import operations as ops
from worker.engine import imports
from worker.engine.isolate import send_isolating
from worker.engine.plan import profile_attributes
from worker.klaviyo.client import KlaviyoClient
from worker.klaviyo.errors import AuthError, KlaviyoRetriableError, RateLimited
from worker.limits import retry
from worker.limits.gate import Throttled
from worker.state.attributes import AttributeQueue
from worker.state.conflicts import IDENTIFIERS, ConflictStore, strip
from worker.state.deadletter import DeadLetter, DeadLetterStore
from worker.state.desired import Desired, DesiredState

IMPORT_PROFILES = ops.BULK_IMPORT.batch_cap  # 10,000 profiles a drain sends per import
AttributeScheduler = Callable[[float], None]  # countdown → enqueue a drain of this job


def now_ms() -> int:
    return int(time.time() * 1000)


def request(state: DesiredState, schedule: AttributeScheduler, wait_seconds: float) -> None:
    """Make sure a drain follows: now when a full import is queued, else within ``wait``."""
    queue = AttributeQueue(state.redis, state.keys)
    waiting = queue.queued()
    if not waiting:
        return
    if waiting >= IMPORT_PROFILES:
        schedule(0.0)
    elif state.redis.set(state.keys.attrs_timer, 1, nx=True, px=int(wait_seconds * 1000)):
        schedule(wait_seconds)


@dataclass
class DrainOutcome:
    sent: int = 0  # profiles whose import Klaviyo accepted
    refused: int = 0
    again_in: float | None = None  # put off (throttled, 429, 5xx): drain again then
    stopped: str = ""


@dataclass
class Drain:
    """One pass: claim up to a full import of queued members, send it, register it."""

    state: DesiredState
    client: KlaviyoClient
    letters: DeadLetterStore
    lease_seconds: float
    schedule_poll: Callable[[str], None]

    def run(self, max_profiles: int = IMPORT_PROFILES, wait_seconds: float = 0.0) -> DrainOutcome:
        """Send one import: a full one, or a partial one once its oldest member has waited
        ``wait_seconds`` (so however many drains are asked for, partial imports stay rare)."""
        queue = AttributeQueue(self.state.redis, self.state.keys)
        oldest = queue.oldest_ms()
        if queue.queued() < max_profiles and not self.state.redis.zcount(
            self.state.keys.attrs_inflight, "-inf", now_ms()
        ) and (oldest is None or now_ms() - oldest < wait_seconds * 900):  # 10 % early is due
            return DrainOutcome()  # not full and not due: the timer brings a drain later
        users = queue.claim(now_ms(), int(self.lease_seconds * 1000), max_profiles)
        outcome = DrainOutcome()
        left = list(users)
        try:
            for chunk in imports.chunks(users, profile_attributes):
                result = send_isolating(chunk, self._send)
                outcome.sent += len(result.sent)
                outcome.refused += len(result.refused)
                if result.refused:
                    source = "klaviyo:" + ops.BULK_IMPORT.name
                    self.letters.add(
                        [DeadLetter(email=u.email, reason=r, source=source)
                         for u, r in result.refused]
                    )
                queue.done([u.email for u in chunk])
                done = {u.email for u in chunk}
                left = [u for u in left if u.email not in done]
        except Throttled as exc:
            outcome.again_in = exc.wait
        except RateLimited as exc:
            outcome.again_in = retry.rate_limited(exc.retry_after)
        except KlaviyoRetriableError:
            outcome.again_in = retry.NO_RETRY_AFTER_SECONDS
        except AuthError as exc:
            outcome.stopped = str(exc)
        finally:
            queue.put_back([u.email for u in left], now_ms())
        return outcome

    def _send(self, batch: list[Desired]) -> None:
        # a 409 earlier: the value another profile holds is left out (worker.state.conflicts)
        carrying = [u.email for u in batch if any(k in u.attributes for k in IDENTIFIERS)]
        taken = ConflictStore(self.state.redis, self.state.keys).read(carrying)
        records = [strip(profile_attributes(u), taken.get(u.email)) for u in batch]
        job = imports.create(self.client, records, None)
        imports.register(self.state, job.id, batch, hold=False)
        self.schedule_poll(job.id)
