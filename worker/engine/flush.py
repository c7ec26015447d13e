"""Apply the current desired state of pending users to Klaviyo with bulk calls.

One ``Flusher.run`` claims up to a batch of pending users, with their desired
state read in the same atomic step, and sends: removals (list-relationship deletes, ids from
the cache or email look-ups) and joins (subscribe jobs of 1,000, or force-add bulk
imports of 10,000 held until Klaviyo finishes them). Mapped fields of subscribed members and
attribute refreshes are only queued here: ``worker.engine.attributes`` drains the queue in
imports of up to 10,000 profiles, so no subscribe waits for an import. Nobody who opted out
is subscribed (``optouts.screen``, before the subscribes). An add-only job
(``on_exit = "keep"``) sends no removals (plan.py decides).
Users whose call did not happen go back to pending; nothing is lost.

Subscribe jobs are asynchronous and have no status: a removal that finds no profile for a
user Klaviyo was (or may have been) told to subscribe checks again later, with growing
gaps, until the profile appears and is removed, or until ``removal_wait_seconds`` pass and
the user is reported as drift (``out?``). The settle time is only the first wait.

On a double opt-in list an accepted subscribe leaves the user awaiting confirmation
(``wait``), not added; :mod:`worker.engine.confirm` finds who confirmed. Force add is
unchanged: added when the import completes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

from contract import operations as ops
from core import names
from core.jobs import ExportJob
from core.keys import account_ids_key
from core.settings import load_settings
from worker.engine import attributes, confirm, consent, imports, optouts
from worker.engine.isolate import send_isolating
from worker.engine.plan import (
    Plan,
    applied_accepted,
    applied_in,
    applied_try,
    applied_wait,
    has_profile_fields,
    make_plan,
    profile_attributes,
)
from worker.klaviyo import lists, profiles, subscriptions
from worker.klaviyo.client import KlaviyoClient
from worker.klaviyo.errors import (
    AuthError,
    BatchTooLarge,
    KlaviyoFatalError,
    KlaviyoRetriableError,
    RateLimited,
)
from worker.limits import retry
from worker.limits.gate import Throttled
from worker.state.attributes import AttributeQueue
from worker.state.brake import RECHECK_SECONDS, RemovalBrake
from worker.state.codes import FORGET, OUT, OUT_NO_PROFILE, OUT_UNCONFIRMED, RETRY
from worker.state.conflicts import IDENTIFIERS, Conflict, ConflictStore, strip
from worker.state.counters import JobCounters
from worker.state.deadletter import DeadLetter, DeadLetterStore
from worker.state.desired import Desired, DesiredState
from worker.state.jobstate import JobStateStore

SUBSCRIBE_CHUNK = ops.BULK_SUBSCRIBE.batch_cap
REMOVE_CHUNK = ops.REMOVE_PROFILES_FROM_LIST.batch_cap
LOOKUP_CHUNK = ops.GET_PROFILES.batch_cap  # emails per look-up: one full page of answers
T = TypeVar("T")
# Klaviyo answered, and the answer says the call was not carried out: nobody was told anything.
NOT_CARRIED_OUT = (Throttled, RateLimited, KlaviyoFatalError, BatchTooLarge)


@dataclass
class FlushContext:
    """Everything one flush needs, built by the task adapter."""

    job: ExportJob
    list_id: str
    state: DesiredState
    jobstate: JobStateStore
    client: KlaviyoClient  # every request charged to the shared limiter as it is sent
    deadletters: DeadLetterStore
    batch_size: int
    lease_seconds: float
    settle_seconds: float
    removal_wait_seconds: float = field(
        default_factory=lambda: load_settings().removal_wait_seconds
    )
    queue: str = names.REALTIME
    schedule_poll: Callable[[str], None] = lambda _job_id: None
    # a double opt-in list (and not force_add): subscribed people await confirmation
    awaits_confirmation: bool = False
    schedule_attributes: attributes.AttributeScheduler = lambda _countdown: None
    attribute_wait_seconds: float = 2.0
    brake: RemovalBrake | None = None  # holds mass removals (worker/state/brake.py)


@dataclass
class FlushOutcome:
    claimed: int = 0
    again_in: float | None = None  # seconds until another flush should run
    stopped: str = ""  # why the job stopped calling Klaviyo
    transient: bool = False  # a 5xx, timeout or dropped connection: back off
    recheck_in: float | None = None  # seconds until a removal waiting for a profile is due
    confirm: bool = False  # a confirmation pass is due for this job: queue one
    done: set[str] = field(default_factory=set)


def now_ms() -> int:
    return int(time.time() * 1000)


class Flusher:
    """One pass over one batch of pending users."""

    def __init__(self, ctx: FlushContext) -> None:
        self.ctx = ctx
        self.outcome = FlushOutcome()

    def run(self, claimed: Sequence[Desired] | None = None) -> FlushOutcome:
        """Flush ``claimed`` users (already claimed by the caller), or claim a batch first."""
        users = list(claimed) if claimed is not None else self._claim()
        if not users:
            return self.outcome
        plan = make_plan(users, removes_on_exit=self.ctx.job.removes_on_exit)
        self.ctx.state.release(plan.released_as_is(), now_ms())
        self._brake(plan)
        steps: list[tuple[list[Desired], Callable[[list[Desired]], None]]] = [
            (plan.leave, self._leave),
            (plan.join, self._join),
            (plan.refresh, self._refresh),
        ]
        for i, (group, step) in enumerate(steps):
            if not self._guarded(group, step):
                self._retry([u for g, _ in steps[i:] for u in g])
                break
        return self.outcome

    def _brake(self, plan: Plan) -> None:
        """Removals past the job's brake wait (parked, due later); the rest of the plan goes on.
        Only people Klaviyo may hold count: a removal with nothing to remove takes nobody off."""
        brake = self.ctx.brake
        if brake is None or not plan.leave:
            return
        if brake.admit([u.email for u in plan.leave if u.may_be_present]):
            return
        brake.hold([u.email for u in plan.leave])
        self.outcome.done.update(u.email for u in plan.leave)
        plan.leave = []
        current = self.outcome.recheck_in  # look again then: the brake may have been released
        self.outcome.recheck_in = min(current or RECHECK_SECONDS, RECHECK_SECONDS)

    def _claim(self) -> list[Desired]:
        lease_ms = int(self.ctx.lease_seconds * 1000)
        claimed, blocked = self.ctx.state.claim(now_ms(), lease_ms, self.ctx.batch_size)
        self.outcome.claimed = len(claimed)
        if not claimed and blocked:
            self.outcome.again_in = max(0.05, (blocked - now_ms()) / 1000)
        return claimed

    def _guarded(self, group: list[Desired], step: Callable[[list[Desired]], None]) -> bool:
        """Run a step; on a passing problem or an auth failure, say when to try again."""
        if not group:
            return True
        try:
            step(group)
        except Throttled as exc:
            self.outcome.again_in = exc.wait
        except RateLimited as exc:
            self.outcome.again_in = retry.rate_limited(exc.retry_after)
            self._last_error(exc)
        except KlaviyoRetriableError as exc:
            self.outcome.again_in = retry.NO_RETRY_AFTER_SECONDS
            self.outcome.transient = True
            self._last_error(exc)
        except AuthError as exc:
            self._last_error(exc)
            self.ctx.jobstate.auth_failed(f"Klaviyo refused the key ({exc.status}): {exc}")
            self.outcome.stopped = str(exc)
        else:
            return True
        return False

    def _last_error(self, exc: Exception) -> None:
        """``status`` shows the newest problem; emails are masked on the way in."""
        state = self.ctx.state
        JobCounters(state.redis, state.keys.prefix, self.ctx.job.id).set_last_error(
            f"{type(exc).__name__}: {exc}"
        )

    def _retry(self, users: Sequence[Desired]) -> None:
        left = [(u.email, RETRY) for u in users if u.email not in self.outcome.done]
        self.ctx.state.release(left, now_ms())

    def _release(self, outcomes: list[tuple[str, str]], settle: bool = False) -> None:
        settle_until = now_ms() + int(self.ctx.settle_seconds * 1000) if settle else 0
        self.ctx.state.release(outcomes, now_ms(), settle_until)
        self.outcome.done.update(email for email, _ in outcomes)

    def _dead_letter(self, refused: list[tuple[Desired, str]], source: str) -> None:
        letters = [DeadLetter(email=u.email, reason=reason, source=source) for u, reason in refused]
        if letters:
            self.ctx.deadletters.add(letters)
            self._release([(u.email, FORGET) for u, _ in refused])

    # --- joins -----------------------------------------------------------------------------
    def _join(self, users: list[Desired]) -> None:
        if self.ctx.job.force_add:
            self._import(users, list_id=self.ctx.list_id)
            return
        users = self._without_opt_outs(users)
        for start in range(0, len(users), SUBSCRIBE_CHUNK):
            self._subscribe(users[start : start + SUBSCRIBE_CHUNK])

    def _without_opt_outs(self, users: list[Desired]) -> list[Desired]:
        """Opt-outs respected (optouts.py): who unsubscribed or is suppressed is counted as
        omitted by reason and released, never subscribed (unless the job resubscribes)."""
        ctx = self.ctx
        admitted, skipped = optouts.screen(ctx.state, ctx.client, ctx.job, ctx.list_id, users)
        self._release([(u.email, FORGET) for u in skipped])
        return admitted

    def _telling(self, batch: list[Desired], send: Callable[[], T]) -> T:
        """Send a call that may put ``batch`` on the list, recorded as ``try`` first.

        A 5xx, a dropped connection or a crash leaves ``try``: Klaviyo may have acted on the
        call, so a later removal looks for these users' profiles. An answer that says the call
        was not carried out (throttled, 429, refused) restores what was recorded before.
        """
        self.ctx.state.set_applied([(u.email, applied_try(u)) for u in batch])
        try:
            return send()
        except NOT_CARRIED_OUT:
            self.ctx.state.set_applied([(u.email, u.applied) for u in batch])
            raise

    def _subscribe(self, chunk: list[Desired]) -> None:
        """Subscribe a chunk: channels with a consent time in a ``historical_import`` job, the
        rest in a normal one (consent.py); a user is released once all their parts are sent."""
        job = self.ctx.job
        taken = self._conflicts(chunk) if job.subscribes_sms else {}
        parts = consent.subscribe_parts(job, chunk, taken)
        sent: dict[str, Desired] = {}
        on_list: set[str] = set()
        refused: dict[str, tuple[Desired, str]] = {}
        for historical, part in ((True, parts.historical), (False, parts.normal)):

            def send(batch: consent.Part, history: bool = historical) -> None:
                people = [p for _, p in batch]
                try:
                    self._telling(
                        [u for u, _ in batch],
                        lambda: subscriptions.subscribe_profiles(
                            self.ctx.client, self.ctx.list_id, people, historical_import=history
                        ),
                    )
                except NOT_CARRIED_OUT:  # their historical part was sent: still ``try``
                    told = [u for u, _ in batch if u.email in sent]
                    self.ctx.state.set_applied([(u.email, applied_try(u)) for u in told])
                    raise

            if not historical and part and self.ctx.awaits_confirmation:
                confirm.start_watermark(self.ctx.state)
            result = send_isolating(part, send)
            sent.update((u.email, u) for u, _ in result.sent)
            if historical:  # historical_import: on the list at once, no confirmation
                on_list.update(u.email for u, _ in result.sent)
            refused.update((u.email, (u, why)) for (u, _), why in result.refused)
        self._queue_attributes([u for u in sent.values() if u.attributes])
        waits = self.ctx.awaits_confirmation
        self._release(
            [
                (u.email, applied_wait(u) if waits and u.email not in on_list else applied_in(u))
                for u in sent.values()
            ],
            settle=True,
        )
        given_up = [r for email, r in refused.items() if email not in sent]
        self._dead_letter([*given_up, *parts.unsendable], "klaviyo:" + ops.BULK_SUBSCRIBE.name)

    def _conflicts(self, users: list[Desired]) -> dict[str, Conflict]:
        """Identifiers known to belong to another profile, for users who carry one."""
        carrying = [u.email for u in users if any(k in u.attributes for k in IDENTIFIERS)]
        return ConflictStore(self.ctx.state.redis, self.ctx.state.keys).read(carrying)

    # --- attributes and force-add through bulk import ----------------------------------------
    def _refresh(self, users: list[Desired]) -> None:
        self._queue_attributes(users)
        self._release([(u.email, applied_accepted(u)) for u in users])

    def _queue_attributes(self, users: list[Desired]) -> None:
        """Queue members' fields for the attribute drain, before ``applied`` records them:
        a crash in between leaves the user claimed, flushed again, and queued again."""
        users = [u for u in users if has_profile_fields(u)]
        if not users:
            return
        state = self.ctx.state
        AttributeQueue(state.redis, state.keys).add([u.email for u in users], now_ms())
        attributes.request(state, self.ctx.schedule_attributes, self.ctx.attribute_wait_seconds)

    def _import(self, users: list[Desired], list_id: str) -> None:
        """Force-add: list-bound imports (with the fields), users held until Klaviyo is done."""
        taken = self._conflicts(users)  # a 409 earlier: sent without the other's identifier
        for chunk in imports.chunks(users, profile_attributes):

            def send(batch: list[Desired], lid: str = list_id) -> None:
                records = [strip(profile_attributes(u), taken.get(u.email)) for u in batch]
                create = partial(imports.create, self.ctx.client, records, lid)
                job = self._telling(batch, create)
                imports.register(self.ctx.state, job.id, batch, hold=True)
                self.ctx.schedule_poll(job.id)

            result = send_isolating(chunk, send)
            lease_ms = int(self.ctx.lease_seconds * 1000)
            self.ctx.state.extend([u.email for u in result.sent], now_ms() + lease_ms)
            self.outcome.done.update(u.email for u in result.sent)
            self._dead_letter(result.refused, "klaviyo:" + ops.BULK_IMPORT.name)

    # --- removals ------------------------------------------------------------------------------
    def _leave(self, users: list[Desired]) -> None:
        ids = self._profile_ids([u.email for u in users])
        absent = [u for u in users if u.email not in ids]
        self._release([(u.email, OUT_NO_PROFILE) for u in absent if not u.may_be_present])
        self._await_profiles([u for u in absent if u.may_be_present])
        present = [u for u in users if u.email in ids]
        for start in range(0, len(present), REMOVE_CHUNK):
            chunk = present[start : start + REMOVE_CHUNK]
            lists.remove_profiles_from_list(
                self.ctx.client, self.ctx.list_id, [ids[u.email] for u in chunk]
            )
            self._release([(u.email, OUT) for u in chunk])

    def _await_profiles(self, users: list[Desired]) -> None:
        """No profile yet for users Klaviyo may have been told to subscribe: look again later.

        Each waits on its own clock (the gap grows with the time already waited), so the
        rest of the batch goes on; past ``removal_wait_seconds`` the user is drift (``out?``).
        """
        if not users:
            return
        now = now_ms()
        since = self.ctx.state.removal_waits([u.email for u in users])
        bound_ms = int(self.ctx.removal_wait_seconds * 1000)
        waits: list[tuple[str, int, int]] = []
        expired: list[tuple[str, str]] = []
        for user in users:
            start = since.get(user.email, now)
            if now - start >= bound_ms:
                expired.append((user.email, OUT_UNCONFIRMED))
            else:
                waits.append((user.email, now + retry.recheck_ms(now - start, bound_ms), start))
        self._release(expired)
        self.ctx.state.defer(waits)
        self.outcome.done.update(email for email, _, _ in waits)
        if waits:
            soonest = (min(due for _, due, _ in waits) - now) / 1000
            current = self.outcome.recheck_in
            self.outcome.recheck_in = soonest if current is None else min(current, soonest)

    def _profile_ids(self, emails: list[str]) -> dict[str, str]:
        """Profile ids from the account's cache, then from paged email look-ups."""
        redis = self.ctx.state.redis
        key = account_ids_key(self.ctx.state.keys.prefix, self.ctx.client.account)
        cached = redis.hmget(key, emails)
        ids = {
            e: (v.decode() if isinstance(v, bytes) else str(v))
            for e, v in zip(emails, cached, strict=True)
            if v
        }
        missing = [e for e in emails if e not in ids]
        for start in range(0, len(missing), LOOKUP_CHUNK):
            found = profiles.find_profile_ids(
                self.ctx.client, missing[start : start + LOOKUP_CHUNK]
            )
            if found:
                redis.hset(key, mapping=found)  # type: ignore[arg-type]  # redis-py Mapping is invariant
            ids.update(found)
        return ids

