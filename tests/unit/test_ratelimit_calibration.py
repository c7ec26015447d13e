"""What the limiter learns from ``RateLimit-Limit/Remaining/Reset``: the account's window phase,
its limit and the share another integration uses; and how the burst log guards latency.

The account is modelled by the sandbox's own limiter (``sandbox.ratelimit.Limiter``: a random
per-account phase, a foreign client spread evenly over every window, headers as the sandbox
sends them), driven directly at the store level: no HTTP, so these tests isolate the Lua.
tests/engine/test_limiter_realistic.py drives the same through HTTP with real latency.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections import Counter
from dataclasses import dataclass

import pytest
import redis

from contract.operations import Operation
from sandbox.clock import Clock
from sandbox.ratelimit import Limiter as Account
from sandbox.realism import Realism
from worker.limits.gate import Gate
from worker.limits.ratelimit import RateHeaders, RateLimiter

ACCOUNT = "acct1"
OP = Operation("t", "POST", "/t", burst=10, steady=150)  # a subscribe-class operation


def headers(clock: Clock, limit: int, remaining: int, reset_real: float) -> dict[str, str]:
    """The headers the sandbox sends for a decision."""
    return {"RateLimit-Limit": str(limit), "RateLimit-Remaining": str(remaining),
            "RateLimit-Reset": clock.header_seconds(reset_real)}


def account(speed: float, foreign_share: float, seed: int = 7) -> Account:
    return Account(Clock(speed), Realism(window_phase="random", foreign_share=foreign_share,
                                         seed=seed), rng=random.Random(seed))


@dataclass
class Run:
    per_window: Counter[int]
    refused_by_account: int

    def full_windows(self) -> list[int]:
        """Our accepted calls in each window that the run covered from start to end, the first
        (learning) window left out."""
        ordered = sorted(self.per_window)
        return [self.per_window[w] for w in ordered[2:-1]]


def drive(limiter: RateLimiter, model: Account, op: Operation, seconds: float, *,
          learn: bool = True) -> Run:
    """Send as fast as the limiter allows for ``seconds``; the model answers each granted call."""
    steady_phase = model.phase(ACCOUNT)[1]
    run = Run(Counter(), 0)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        grant = limiter.request(ACCOUNT, op)
        if not grant.granted:
            time.sleep(min(grant.wait, 0.005))
            continue
        decision = model.take(ACCOUNT, op)
        if not decision.allowed:
            run.refused_by_account += 1
            continue
        run.per_window[int((model.clock.virtual() - steady_phase) // 60)] += 1
        if learn:
            found = RateHeaders.parse(headers(model.clock, decision.limit, decision.remaining,
                                              decision.reset))
            assert found is not None
            limiter.observe(ACCOUNT, op, grant, found)
    return run


@pytest.fixture
def limiter(redis_client: redis.Redis) -> RateLimiter:
    return RateLimiter(redis_client, prefix="cal", headroom=0.95, speed=60)


@pytest.mark.serial  # figures: the share of a window we use, measured alone
class TestSharedQuota:
    def test_a_foreign_client_at_15_percent_gets_no_429_and_we_use_90_percent_of_the_rest(
        self, redis_client: redis.Redis
    ) -> None:
        """An account at a random phase, another integration spending 15 % of every window:
        not one of our calls is refused, and each window carries at least 90 % of the 51
        calls the other integration leaves of 60 (windows of 2 s at speed 30, slow enough
        for a loaded machine to keep up with)."""
        # given
        op = Operation("t", "POST", "/t", burst=10, steady=60)
        limiter = RateLimiter(redis_client, prefix="cal", headroom=0.95, speed=30)
        model = account(speed=30, foreign_share=0.15)
        # when
        run = drive(limiter, model, op, seconds=11)
        # then
        left = op.steady * (1 - 0.15)
        assert run.refused_by_account == 0
        assert len(run.full_windows()) >= 2
        assert min(run.full_windows()) >= 0.9 * left, run.per_window

    def test_the_foreign_reserve_is_learnt_from_remaining(self, limiter: RateLimiter) -> None:
        """Remaining lower than our own count by about 22 calls a window: that is the reserve."""
        # given
        model = account(speed=60, foreign_share=0.15)
        # when
        drive(limiter, model, OP, seconds=3.5)
        # then
        assert 18 <= limiter.calibration(ACCOUNT, OP)["f"] <= 26

    def test_without_answers_to_learn_from_the_limiter_is_safe_but_slow(
        self, limiter: RateLimiter
    ) -> None:
        """Not knowing the phase, every call counts in two windows: nothing is refused, but
        well under the 90 % a calibrated limiter reaches."""
        # given
        model = account(speed=60, foreign_share=0.0)
        # when
        run = drive(limiter, model, OP, seconds=4.5, learn=False)
        # then
        assert run.refused_by_account == 0
        assert max(run.full_windows()) < 0.8 * OP.steady


class TestPhase:
    def test_whole_second_resets_pin_the_boundary_within_their_own_rounding(
        self, redis_client: redis.Redis
    ) -> None:
        """At Klaviyo's real speed ``RateLimit-Reset`` is whole seconds, rounded up by the
        sandbox and perhaps down by Klaviyo: answers at different fractions of a second
        narrow the window's end to that one second of doubt, and it holds the real end."""
        # given
        limiter = RateLimiter(redis_client, prefix="cal", headroom=0.95, speed=1)
        model = account(speed=1, foreign_share=0.15, seed=3)
        op = Operation("p", "GET", "/p", burst=100, steady=750)
        # when: fifteen answers, 0.11 s apart
        for _ in range(15):
            grant = limiter.request(ACCOUNT, op)
            decision = model.take(ACCOUNT, op)
            found = RateHeaders.parse(headers(model.clock, decision.limit, decision.remaining,
                                              decision.reset))
            assert grant.granted and found is not None and found.resolution == 1.0
            limiter.observe(ACCOUNT, op, grant, found)
            time.sleep(0.11)
        # then: the learnt interval is about a second wide and holds the real boundary
        learnt = limiter.calibration(ACCOUNT, op)
        lo, hi = learnt["lo"] / 1e6, learnt["hi"] / 1e6
        boundary = model.phase(ACCOUNT)[1] % 60
        assert hi - lo <= 1.15
        offset = (boundary - lo) % 60
        assert offset <= hi - lo + 0.002 or offset >= 60 - 0.002

    def test_fractional_resets_pin_the_boundary_within_a_few_milliseconds(
        self, limiter: RateLimiter
    ) -> None:
        """At speed 60 the sandbox's Reset has three decimals: the boundary is pinned to the
        round trip."""
        # given
        model = account(speed=60, foreign_share=0.15, seed=5)
        # when
        drive(limiter, model, OP, seconds=1.5)
        # then
        learnt = limiter.calibration(ACCOUNT, OP)
        lo, hi = learnt["lo"] / 1e6, learnt["hi"] / 1e6
        boundary = (model.phase(ACCOUNT)[1] / 60) % 1.0
        assert hi - lo <= 0.01
        assert min((boundary - lo) % 1.0, (lo - boundary) % 1.0) <= 0.01

    def test_a_full_window_waits_for_the_accounts_boundary_not_the_clocks_minute(
        self, redis_client: redis.Redis
    ) -> None:
        """Once learnt, a full steady window reopens at the account's boundary."""
        # given: an account whose windows end 25.4 s past each epoch minute
        limiter = RateLimiter(redis_client, prefix="cal", headroom=1.0, speed=1)
        op = Operation("q", "GET", "/q", burst=100, steady=10)
        phase = 25.4
        for _ in range(3):
            grant = limiter.request(ACCOUNT, op)
            sec, usec = redis_client.time()
            left = (phase - (sec + usec / 1e6)) % 60
            limiter.observe(ACCOUNT, op, grant, RateHeaders(10, 9, round(left, 3), 0.001))
            time.sleep(0.05)
        # when
        while limiter.acquire(ACCOUNT, op) == 0.0:
            pass
        wait = limiter.acquire(ACCOUNT, op)
        sec, usec = redis_client.time()
        # then
        reopens = (sec + usec / 1e6 + wait) % 60
        assert abs(reopens - phase) < 0.05

    def test_the_limit_header_is_trusted_over_the_operation_table(
        self, redis_client: redis.Redis
    ) -> None:
        """The table says 20 a minute, the account says 10: ten calls, then a wait."""
        # given
        limiter = RateLimiter(redis_client, prefix="cal", headroom=1.0, speed=1)
        op = Operation("l", "GET", "/l", burst=100, steady=20)
        grant = limiter.request(ACCOUNT, op)
        limiter.observe(ACCOUNT, op, grant, RateHeaders(10, 9, 30.0, 1.0))
        # when
        granted = sum(limiter.acquire(ACCOUNT, op) == 0.0 for _ in range(15))
        # then
        assert limiter.calibration(ACCOUNT, op)["lim"] == 10
        assert granted == 9


class TestBurstLog:
    def test_no_second_at_any_phase_holds_more_than_the_burst_allowance(
        self, redis_client: redis.Redis
    ) -> None:
        """Grants kept up for 2.5 s: no one-second span, wherever it starts, holds more than
        5 (fixed windows on the clock's second let 10 through across a boundary)."""
        # given
        limiter = RateLimiter(redis_client, prefix="cal", headroom=1.0, speed=1)
        op = Operation("b", "GET", "/b", burst=5, steady=1000)
        times: list[int] = []
        # when
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            grant = limiter.request(ACCOUNT, op)
            if grant.granted:
                times.append(grant.at_us)
            else:
                time.sleep(min(grant.wait, 0.01))
        # then
        densest = max(sum(1 for u in times if t <= u < t + 1_000_000) for t in times)
        assert densest == 5
        assert len(times) >= 10

    def test_a_slow_round_trip_widens_the_burst_log(self, redis_client: redis.Redis) -> None:
        """An answer 0.3 s after its grant: a call may reach Klaviyo that much later, so five
        calls a second become five per 1.3 s."""
        # given
        limiter = RateLimiter(redis_client, prefix="cal", headroom=1.0, speed=1)
        op = Operation("s", "GET", "/s", burst=5, steady=1000)
        grant = limiter.request(ACCOUNT, op)
        late = dataclasses.replace(grant, at_us=grant.at_us - 300_000)
        limiter.observe(ACCOUNT, op, late, RateHeaders(1000, 998, 30.0, 1.0))
        # when
        waits = [limiter.acquire(ACCOUNT, op) for _ in range(5)]
        # then
        assert waits[:4] == [0.0] * 4
        assert 1.25 < waits[4] <= 1.31
        assert 0.29 < limiter.calibration(ACCOUNT, op)["a"] / 1e6 < 0.35


class TestGate:
    def test_answers_without_rate_headers_teach_nothing(self, redis_client: redis.Redis) -> None:
        """A 401 or a proxy's page carries no RateLimit-*: nothing is stored."""
        limiter = RateLimiter(redis_client, prefix="cal", speed=1)
        gate = Gate(limiter)
        ticket = gate.charge(ACCOUNT, OP)
        gate.observe(ACCOUNT, OP, ticket, {"Content-Type": "text/html"})
        gate.observe(ACCOUNT, OP, ticket, {"RateLimit-Limit": "x", "RateLimit-Remaining": "1",
                                           "RateLimit-Reset": "3"})
        assert limiter.calibration(ACCOUNT, OP) == {}

    @pytest.mark.parametrize(("text", "resolution"), [("7", 1.0), ("1.25", 0.01), ("0.5", 0.1)])
    def test_the_reset_header_keeps_its_resolution(self, text: str, resolution: float) -> None:
        found = RateHeaders.parse({"RateLimit-Limit": "150", "RateLimit-Remaining": "3",
                                   "RateLimit-Reset": text})
        assert found is not None
        assert (found.reset, found.resolution) == (float(text), pytest.approx(resolution))
