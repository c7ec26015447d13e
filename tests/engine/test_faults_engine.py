"""The engine under pressure: real limits, 429 storms, killed workers and poison profiles."""

from __future__ import annotations

import time

import pytest
import redis

from core.events import Action
from tests.conftest import wait_until
from tests.harness import Stack, event

E, X = Action.ENTER, Action.EXIT
T0 = 1_764_000_000_000_000_000


def stats_total(stack: Stack, status: str) -> int:
    stats = stack.admin("GET", "stats")
    return sum(int(op.get("statuses", {}).get(status, 0)) for op in stats["operations"].values())


@pytest.mark.faults
class TestLimits:
    def test_a_burst_of_20000_enters_meets_no_429_and_a_storm_loses_nothing(
        self, stack: Stack
    ) -> None:
        """Two workers export 20,000 enters with zero 429s; a forced storm then pauses them."""
        # given two worker processes against the sandbox's real limits
        stack.write_jobs({"id": "burst", "audiences": ["vip"], "new_list_opt_in": "single"})
        stack.start_worker("w1")
        stack.start_worker("w2")
        emails = [f"user{i:05d}@example.com" for i in range(20_000)]
        # when a burst of 20,000 enter events arrives in bodies of 1,000
        for start in range(0, len(emails), 1000):
            stack.send("burst", [event(e, "vip", E, T0) for e in emails[start : start + 1000]])
        stack.wait_for_members("burst", set(emails), timeout=120)
        # then not one call was refused
        assert stats_total(stack, "429") == 0
        calls = stack.admin("GET", "stats")["operations"]["bulk_subscribe_profiles"]["calls"]
        assert calls <= 25, f"{calls} subscribe calls for 20,000 users"
        # when Klaviyo answers 429 to everything for 3 s while 2,000 users exit
        stack.admin("POST", "faults", json={"storm": {"seconds": 3, "retry_after": 3}})
        started = time.monotonic()
        stack.send("burst", [event(e, "vip", X, T0 + 1) for e in emails[:2000]])
        stack.wait_for_members("burst", set(emails[2000:]), timeout=120)
        # then every worker waited out the storm and nothing was lost
        assert time.monotonic() - started >= 2.5
        assert stats_total(stack, "429") <= 6, "each 429 should pause the whole fleet"
        stack.assert_reconciled("burst", entered=20_000, members=18_000)


@pytest.mark.faults
class TestCrashes:
    def test_kill_9_of_a_worker_mid_flush_loses_nothing(self, stack: Stack) -> None:
        """A worker killed while flushing leaves its users leased; another worker finishes them.

        Wherever the kill lands (the account's opt-out fill included: its lock lapses with
        its holder), the survivor has every user on the list within 30 s."""
        stack.extra_env["LEASE_SECONDS"] = "3"
        stack.write_jobs({"id": "crash", "audiences": ["vip"], "new_list_opt_in": "single"})
        # slow Klaviyo down so that the kill lands mid-flush
        stack.admin("POST", "faults", json={"latency_ms": 800})
        victim = stack.start_worker("w1")
        emails = [f"k{i:04d}@example.com" for i in range(3000)]
        stack.send("crash", [event(e, "vip", E, T0) for e in emails])
        wait_until(
            lambda: int(stack.counters("crash").get("added", 0)) > 0 or _inflight(stack, "crash"),
            timeout=30,
            message="a flush in flight",
        )
        stack.kill_worker(victim)
        stack.admin("DELETE", "faults")
        stack.start_worker("w2")
        stack.start_beat()
        try:
            stack.wait_for_members("crash", set(emails), timeout=30)
        except AssertionError:
            r = redis.Redis.from_url(stack.redis_url, decode_responses=True)
            base = f"{stack.prefix}:job:crash"
            print(
                "COUNTERS",
                stack.counters("crash"),
                "pending",
                r.zcard(base + ":pending"),
                "inflight",
                r.zrange(base + ":inflight", 0, 3, withscores=True),
                time.time() * 1000,
                "members",
                len(stack.list_emails(stack.wait_for_list("crash"))),
            )
            print("W2LOG", stack.log("w2")[-3000:])
            print("W1LOG", stack.log("w1")[-3000:])
            raise
        stack.assert_reconciled("crash", entered=len(emails), members=len(emails))

    def test_a_poison_profile_is_dead_lettered_without_blocking_its_batch(
        self, stack: Stack
    ) -> None:
        """Klaviyo's refusal of one profile sends it to the dead-letter store with the reason."""
        stack.write_jobs({"id": "poison", "audiences": ["vip"],
                          "new_list_opt_in": "single", "force_add": True})
        stack.start_worker()
        good = [f"p{i}@example.com" for i in range(200)]
        stack.send(
            "poison", [event(e, "vip", E, T0) for e in [*good[:100], "bad@domain.c", *good[100:]]]
        )
        stack.wait_for_members("poison", set(good), timeout=60)
        wait_until(
            lambda: stack.counters("poison").get("dead_lettered") == "1",
            timeout=20,
            message="one dead letter",
        )
        raw = redis.Redis.from_url(stack.redis_url).lrange(f"{stack.prefix}:job:poison:dlq", 0, -1)
        assert len(raw) == 1 and b"bad@domain.c" in raw[0] and b"nvalid email" in raw[0]
        stack.assert_reconciled("poison", entered=201, members=200)


def _inflight(stack: Stack, job_id: str) -> int:
    return int(redis.Redis.from_url(stack.redis_url).zcard(f"{stack.prefix}:job:{job_id}:inflight"))
