"""The global limiter before it has learnt anything of the account: windows in server time,
atomic grants, a shared cool-down (tests/unit/test_ratelimit_calibration.py: what it learns)."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from contract.operations import Operation
from tests.conftest import wait_until
from worker.limits.ratelimit import ARRIVAL_SPREAD_SECONDS, RateLimiter, allowed_calls

OP = Operation("t", "GET", "/t", burst=5, steady=20)
ACCOUNT = "acct1"

MakeLimiter = Callable[..., RateLimiter]
FreshLimiter = Callable[..., RateLimiter]


@pytest.fixture
def make_limiter(redis_client: redis.Redis) -> MakeLimiter:
    """Limiters on the test Redis; headroom 1.0 unless a test says otherwise."""

    def make(speed: float = 1.0, headroom: float = 1.0) -> RateLimiter:
        return RateLimiter(redis_client, prefix="test", headroom=headroom, speed=speed)

    return make


@pytest.fixture
def fresh_limiter(make_limiter: MakeLimiter, redis_client: redis.Redis) -> FreshLimiter:
    """Make a limiter, then make sure ``margin`` s are left in the current ``window``-s window."""

    def make(window: float, margin: float, **options: float) -> RateLimiter:
        limiter = make_limiter(**options)
        fresh_window(redis_client, window, margin=margin)
        return limiter

    return make


def fresh_window(client: redis.Redis, length: float, margin: float) -> None:
    """Sleep past the next window boundary (server time) when fewer than ``margin`` s remain."""
    sec, usec = client.time()
    left = length - (sec + usec / 1e6) % length
    if left < margin:
        time.sleep(left + 0.002)


def next_window(client: redis.Redis, length: float) -> None:
    """Sleep just past the next boundary of a ``length``-second window (server time)."""
    sec, usec = client.time()
    time.sleep(length - (sec + usec / 1e6) % length + 0.002)


def fill_then_probe(limiter: RateLimiter, op: Operation, fill: int) -> float:
    """Take ``fill`` calls in one grant, then return the wait of one more call in that window."""
    for _ in range(50):
        wait_until(lambda: limiter.acquire(ACCOUNT, op, fill) == 0.0, timeout=5, message="a grant")
        probe = limiter.acquire(ACCOUNT, op)
        if probe > 0:
            return probe
    raise AssertionError("never probed inside the filled window")


class TestBurstWindow:
    def test_the_call_after_the_limit_is_refused_with_a_wait_within_the_window(
        self, fresh_limiter: FreshLimiter
    ) -> None:
        """The sixth call in a 5/s window is refused with a wait of at most one second plus
        the arrival spread assumed before any answer was seen (0.1 s)."""
        # given
        limiter = fresh_limiter(1.0, margin=0.3)
        # when
        waits = [limiter.acquire(ACCOUNT, OP) for _ in range(6)]
        # then
        assert waits[:5] == [0.0] * 5
        assert 1.0 < waits[5] <= 1.0 + ARRIVAL_SPREAD_SECONDS

    def test_a_refused_call_passes_once_its_wait_is_over(self, make_limiter: MakeLimiter) -> None:
        """Waiting the returned time is enough for the same call to be granted."""
        # given
        limiter = make_limiter(speed=50)
        wait = fill_then_probe(limiter, OP, fill=5)
        # when
        time.sleep(wait)
        # then
        assert limiter.acquire(ACCOUNT, OP) == 0.0

    def test_headroom_lowers_the_ceiling(self, fresh_limiter: FreshLimiter) -> None:
        """With 90 % headroom a 10/s operation gets 9 calls per second."""
        # given
        op = Operation("h", "GET", "/h", burst=10, steady=100)
        limiter = fresh_limiter(1.0, margin=0.3, headroom=0.9)
        # when
        granted = sum(limiter.acquire(ACCOUNT, op) == 0.0 for _ in range(12))
        # then
        assert granted == 9


@pytest.mark.parametrize(
    ("limit", "headroom", "expected"),
    [(10, 0.9, 9), (5, 0.9, 4), (750, 0.9, 675), (150, 0.8, 120), (1, 0.5, 1), (20, 1.0, 20)],
)
def test_allowed_calls_is_the_floor_of_limit_times_headroom_but_at_least_one(
    limit: int, headroom: float, expected: int
) -> None:
    """Allowed calls per window are floor(limit x headroom), never zero."""
    assert allowed_calls(limit, headroom) == expected


class TestSteadyWindow:
    def test_the_steady_window_refuses_past_its_limit_while_burst_allows(
        self, fresh_limiter: FreshLimiter
    ) -> None:
        """Eight calls a minute stop the ninth even in a fresh burst window."""
        # given: speed 60 makes the burst window 1/60 s and the steady window 1 s
        op = Operation("s", "GET", "/s", burst=5, steady=8)
        limiter = fresh_limiter(1.0, margin=0.4, speed=60)
        assert limiter.acquire(ACCOUNT, op, 5) == 0.0
        wait_until(lambda: limiter.acquire(ACCOUNT, op, 3) == 0.0, timeout=1, message="burst reset")
        # when
        wait = limiter.acquire(ACCOUNT, op)
        # then: the wait is the steady window's, longer than any burst window
        assert 1 / 60 < wait <= 1.0


class TestRefusalsCountNothing:
    def test_a_call_too_big_for_the_burst_window_leaves_it_untouched(
        self, fresh_limiter: FreshLimiter
    ) -> None:
        """After a refused 2-call request, the one call still left in the window is granted."""
        # given
        limiter = fresh_limiter(1.0, margin=0.3)
        assert limiter.acquire(ACCOUNT, OP, 4) == 0.0
        # when
        refused = limiter.acquire(ACCOUNT, OP, 2)
        # then
        assert refused > 0
        assert limiter.acquire(ACCOUNT, OP) == 0.0
        assert limiter.acquire(ACCOUNT, OP) > 0

    def test_a_call_refused_by_the_steady_window_leaves_the_burst_window_untouched(
        self, fresh_limiter: FreshLimiter, redis_client: redis.Redis
    ) -> None:
        """A request the steady window refuses does not spend the burst window it passed."""
        # given: burst 5/window, steady 6/window; 3 calls already spent this steady window
        op = Operation("r", "GET", "/r", burst=5, steady=6)
        limiter = fresh_limiter(2.0, margin=0.5, speed=30)
        assert limiter.acquire(ACCOUNT, op, 3) == 0.0
        time.sleep(2 / 30 + 0.005)  # the burst log's span (1/30 s + spread) has passed
        # when
        refused = limiter.acquire(ACCOUNT, op, 4)
        # then: 3 more fit this burst window only if the refused 4 were not counted
        assert refused > 0
        assert limiter.acquire(ACCOUNT, op, 3) == 0.0


def _hammer(url: str, attempts: int) -> int:
    """Child process: try ``attempts`` calls with a limiter of its own; return the grants."""
    limiter = RateLimiter(redis.Redis.from_url(url), prefix="test", headroom=1.0, speed=0.001)
    op = Operation("c", "GET", "/c", burst=25, steady=1000)
    return sum(limiter.acquire(ACCOUNT, op) == 0.0 for _ in range(attempts))


class TestConcurrency:
    def test_threads_hammering_never_exceed_the_window(self, fresh_limiter: FreshLimiter) -> None:
        """Four threads making 200 attempts in one 20-call window get exactly 20 grants."""
        # given: speed 0.001 stretches the burst window to 1000 s, so every attempt shares it
        op = Operation("c", "GET", "/c", burst=20, steady=1000)
        limiter = fresh_limiter(1000.0, margin=1.0, speed=0.001)
        start = threading.Barrier(4)

        def attempts() -> int:
            start.wait()
            return sum(limiter.acquire(ACCOUNT, op) == 0.0 for _ in range(50))

        # when
        with ThreadPoolExecutor(4) as pool:
            grants = list(pool.map(lambda _: attempts(), range(4)))
        # then
        assert sum(grants) == 20

    def test_processes_share_one_budget(self, redis_url: str, redis_client: redis.Redis) -> None:
        """Three worker processes, each with its own client, together get the window's 25 calls."""
        # given
        fresh_window(redis_client, 1000.0, margin=2.0)
        ctx = multiprocessing.get_context("fork")
        # when
        with ctx.Pool(3) as pool:
            grants = pool.starmap(_hammer, [(redis_url, 30)] * 3)
        # then
        assert sum(grants) == 25


class TestCooldown:
    def test_a_cooldown_blocks_every_worker(
        self, make_limiter: MakeLimiter, redis_client: redis.Redis
    ) -> None:
        """One worker's 429 pause makes another worker's acquire wait the pause out."""
        # given
        worker_a, worker_b = make_limiter(), make_limiter()
        # when
        worker_a.cooldown(ACCOUNT, OP, 5)
        # then
        assert 4 < worker_b.acquire(ACCOUNT, OP) <= 5

    def test_a_cooldown_extends_but_never_shortens(self, make_limiter: MakeLimiter) -> None:
        """A shorter pause leaves a longer one in place; a longer pause replaces it."""
        # given
        limiter = make_limiter()
        limiter.cooldown(ACCOUNT, OP, 10)
        # when
        limiter.cooldown(ACCOUNT, OP, 2)
        # then
        assert 9 < limiter.cooldown_remaining(ACCOUNT, OP) <= 10
        # when
        limiter.cooldown(ACCOUNT, OP, 20)
        # then
        assert 19 < limiter.cooldown_remaining(ACCOUNT, OP) <= 20

    def test_a_cooldown_is_per_account_and_operation(self, make_limiter: MakeLimiter) -> None:
        """Pausing one account's operation leaves other accounts and operations alone."""
        # given
        limiter = make_limiter()
        other_op = Operation("o", "GET", "/o", burst=5, steady=20)
        # when
        limiter.cooldown(ACCOUNT, OP, 30)
        # then
        assert limiter.acquire("acct2", OP) == 0.0
        assert limiter.acquire(ACCOUNT, other_op) == 0.0
        assert limiter.cooldown_remaining("acct2", OP) == 0.0

    def test_acquire_resumes_with_a_full_window_when_the_cooldown_ends(
        self, make_limiter: MakeLimiter
    ) -> None:
        """Calls refused during a pause were not counted: the whole window is there afterwards."""
        # given
        limiter = make_limiter(speed=0.01)
        limiter.cooldown(ACCOUNT, OP, 0.2)
        assert limiter.acquire(ACCOUNT, OP, 5) > 0
        # when
        wait_until(
            lambda: limiter.cooldown_remaining(ACCOUNT, OP) == 0.0,
            timeout=2,
            message="cool-down to end",
        )
        # then
        assert limiter.acquire(ACCOUNT, OP, 5) == 0.0


class TestDailyWindow:
    def test_the_daily_cap_outlasts_the_burst_and_steady_windows(
        self, fresh_limiter: FreshLimiter, redis_client: redis.Redis
    ) -> None:
        """Three calls a day stop the fourth with a wait longer than a steady window."""
        # given: speed 1000 makes the windows 1 ms, 60 ms and 86.4 s
        op = Operation("d", "POST", "/d", burst=100, steady=100, daily=3)
        limiter = fresh_limiter(86.4, margin=2.0, speed=1000)
        assert [limiter.acquire(ACCOUNT, op) for _ in range(3)] == [0.0] * 3
        # when
        first = limiter.acquire(ACCOUNT, op)
        next_window(redis_client, 0.06)
        second = limiter.acquire(ACCOUNT, op)
        # then
        assert 0.06 < second < first <= 86.4


class TestSpeed:
    def test_speed_shortens_windows_and_waits_are_real_seconds(
        self, make_limiter: MakeLimiter
    ) -> None:
        """At speed 100 a full burst log asks for at most 20 ms of real waiting (10 ms of
        window and as much again of arrival spread)."""
        # given
        limiter = make_limiter(speed=100)
        # when
        wait = fill_then_probe(limiter, OP, fill=5)
        # then
        assert 0 < wait <= 0.02

    def test_before_any_answer_steady_windows_start_at_exact_multiples(
        self, make_limiter: MakeLimiter, redis_client: redis.Redis
    ) -> None:
        """At speed 30, with nothing learnt yet, a full steady window waits until the next
        multiple of 2 s."""
        # given
        limiter = make_limiter(speed=30)
        op = Operation("m", "GET", "/m", burst=100, steady=4)
        fresh_window(redis_client, 2.0, margin=0.5)
        assert limiter.acquire(ACCOUNT, op, 4) == 0.0
        # when
        wait = limiter.acquire(ACCOUNT, op)
        sec, usec = redis_client.time()
        # then: now + wait lands on a window boundary (within the round trip)
        phase = (sec + usec / 1e6 + wait) % 2.0
        assert min(phase, 2.0 - phase) < 0.005

    @pytest.mark.parametrize("speed", [0, -1, 10_000_000])
    def test_impossible_speeds_are_refused(self, redis_client: redis.Redis, speed: float) -> None:
        """A speed that is not positive, or below a microsecond per window, is refused."""
        with pytest.raises(ValueError, match="speed"):
            RateLimiter(redis_client, prefix="test", speed=speed)


class TestHousekeeping:
    def test_every_key_lives_under_the_prefix_and_expires(
        self, make_limiter: MakeLimiter, redis_client: redis.Redis
    ) -> None:
        """Window and cool-down keys sit under {prefix}:rl:{account}:{op} and carry a TTL."""
        # given
        limiter = make_limiter()
        op = Operation("k", "POST", "/k", burst=5, steady=20, daily=10)
        # when
        limiter.acquire(ACCOUNT, op)
        limiter.cooldown(ACCOUNT, op, 3)
        # then
        keys = sorted(redis_client.keys("*"))
        assert keys == [f"test:rl:{ACCOUNT}:k:{s}" for s in ("bl", "cd", "d", "s")]
        assert all(0 < redis_client.ttl(k) <= 86_401 for k in keys)

    def test_the_limiter_survives_a_script_flush(
        self, make_limiter: MakeLimiter, redis_client: redis.Redis
    ) -> None:
        """A Redis that forgot the script (a restart) gets it loaded again on the next call."""
        # given
        limiter = make_limiter()
        limiter.acquire(ACCOUNT, OP)
        # when
        redis_client.script_flush()
        # then
        assert limiter.acquire(ACCOUNT, OP) == 0.0

    @pytest.mark.parametrize("n", [0, -1, 6])
    def test_impossible_requests_are_refused_loudly(
        self, make_limiter: MakeLimiter, n: int
    ) -> None:
        """Asking for no calls, or more than a window can ever allow, is a programming error."""
        with pytest.raises(ValueError, match="cannot acquire"):
            make_limiter().acquire(ACCOUNT, OP, n)


def test_a_call_at_the_very_end_of_a_steady_window_also_counts_in_the_next(
    make_limiter: MakeLimiter, redis_client: redis.Redis
) -> None:
    """A call granted as a window ends may reach Klaviyo in the next one: it counts in both."""
    # given: steady 3 per 10 s window (speed 6), and a moment 5 ms before a window ends
    limiter = make_limiter(speed=6.0)
    op = Operation("g", "GET", "/g", burst=100, steady=3)
    seconds, micros = redis_client.time()
    now = seconds + micros / 1_000_000
    time.sleep((now // 10 + 1) * 10 - now - 0.005)
    # when one call is granted there, and the window turns
    assert limiter.acquire(ACCOUNT, op) == 0.0
    next_window(redis_client, 10)
    # then the new window has room for two more, not three
    assert limiter.acquire(ACCOUNT, op, 2) == 0.0
    assert limiter.acquire(ACCOUNT, op) > 0
