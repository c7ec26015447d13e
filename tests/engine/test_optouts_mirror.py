"""Filling and refreshing an account's opt-out mirror from Klaviyo (the sandbox over HTTP,
real Redis, no workers): everything in one fill, resumed across a small time budget; new
suppressions read incrementally; a rebuild drops suppressions lifted since."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis

from sandbox.server import SandboxServer
from sandbox.testing import SandboxClient
from worker.engine import optouts
from worker.engine.optouts import refresh
from worker.klaviyo.client import KlaviyoClient
from worker.klaviyo.suppressions import SUPPRESSED, UNSUBSCRIBED
from worker.state import locks
from worker.state.optouts import OptOutMirror

KEY = "pk_test_mirror_0123456789"
DAY = 86_400.0


@pytest.fixture
def server() -> Iterator[SandboxServer]:
    sb = SandboxServer(profile="fast", job_delay=0.0).start()
    yield sb
    sb.stop()


@pytest.fixture
def api(server: SandboxServer) -> SandboxClient:
    return SandboxClient(server.url, KEY)


@pytest.fixture
def client(server: SandboxServer) -> KlaviyoClient:
    return KlaviyoClient(KEY, base_url=server.url, revision="2026-07-15")


@pytest.fixture
def mirror(redis_client: redis.Redis, client: KlaviyoClient) -> OptOutMirror:
    return OptOutMirror(redis_client, "t", client.account)


def unsubscribe(api: SandboxClient, emails: list[str]) -> None:
    """People unsubscribe (the sandbox creates missing profiles, globally unsubscribed)."""
    for start in range(0, len(emails), 100):
        api.wait_subscribe(api.unsubscribe(None, emails[start:start + 100]))


def profile_reads(api: SandboxClient) -> int:
    return int(api.admin("GET", "stats")["operations"].get("get_profiles", {}).get("calls", 0))


def test_a_fill_reads_every_suppressed_and_list_suppressed_profile(
        api: SandboxClient, client: KlaviyoClient, mirror: OptOutMirror) -> None:
    list_id = api.create_list("L", "single_opt_in")
    api.wait_subscribe(api.subscribe(list_id, ["on@example.com", "bounce@example.com",
                                               "fine@example.com"]))
    unsubscribe(api, ["gone@example.com"])
    api.admin("POST", "suppress", {"emails": ["bounce@example.com"], "reason": "HARD_BOUNCE"})
    api.admin("POST", "suppress", {"emails": ["on@example.com"], "reason": "UNSUBSCRIBE",
                                   "list_id": list_id})

    done = refresh(mirror, client, budget_seconds=10)

    assert done.filled and not done.more
    everyone = ["gone@example.com", "bounce@example.com", "on@example.com", "fine@example.com"]
    assert mirror.reasons(everyone, list_id) == {
        "gone@example.com": UNSUBSCRIBED, "bounce@example.com": SUPPRESSED,
        "on@example.com": UNSUBSCRIBED}
    assert mirror.reasons(["on@example.com"], "another-list") == {}


def test_a_fill_cut_short_goes_on_where_it_stopped(
        api: SandboxClient, client: KlaviyoClient, mirror: OptOutMirror) -> None:
    """250 unsubscribed people are 3 pages: with no time budget each refresh reads one page,
    keeps its cursor, and the mirror is put in force only once complete."""
    people = [f"u{i:03d}@example.com" for i in range(250)]
    unsubscribe(api, people)
    api.admin("DELETE", "stats")
    outcomes = []
    while not (outcomes and outcomes[-1].filled) and len(outcomes) < 10:
        outcomes.append(refresh(mirror, client, budget_seconds=0))
    assert [o.filled for o in outcomes] == [False, False, True]
    assert [o.more for o in outcomes] == [True, True, False]
    assert len(mirror.reasons(people, "L")) == 250
    # 3 pages of global suppressions, 1 of list suppressions; then what was suppressed since
    # the fill began is read again (here everyone) before the mirror is put in force
    assert profile_reads(api) == (3 + 1) * 2


def test_new_suppressions_are_read_incrementally(
        api: SandboxClient, client: KlaviyoClient, mirror: OptOutMirror,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A refresh reads only what was suppressed since the last one began. It reads
    ``REFRESH_OVERLAP`` (2 min) further back, and filters compare whole seconds: here the
    overlap is 0 and the old suppressions are a second older than the fill."""
    monkeypatch.setattr(optouts, "REFRESH_OVERLAP", timedelta(0))
    unsubscribe(api, [f"old{i:03d}@example.com" for i in range(150)])
    time.sleep(1.1)  # the fill begins in a later second than the old suppressions
    assert refresh(mirror, client, budget_seconds=10).filled
    api.admin("DELETE", "stats")

    unsubscribe(api, ["new@example.com"])
    assert refresh(mirror, client, budget_seconds=10).filled

    assert mirror.reasons(["new@example.com"], "L") == {"new@example.com": UNSUBSCRIBED}
    assert profile_reads(api) == 2  # one page per kind, not the account's 151 again
    assert mirror.state().generation == 1


def test_a_rebuild_drops_a_suppression_lifted_since(
        api: SandboxClient, client: KlaviyoClient, mirror: OptOutMirror) -> None:
    """Someone who subscribed again elsewhere (a form) stays skipped until the daily
    rebuild, then is no longer."""
    unsubscribe(api, ["back@example.com", "still@example.com"])
    assert refresh(mirror, client, budget_seconds=10).filled
    list_id = api.create_list("Form", "single_opt_in")
    api.wait_subscribe(api.subscribe(list_id, ["back@example.com"]))  # lifts UNSUBSCRIBE

    assert refresh(mirror, client, budget_seconds=10, rebuild_seconds=DAY).filled
    assert set(mirror.reasons(["back@example.com", "still@example.com"], "L")) == {
        "back@example.com", "still@example.com"}  # an incremental read cannot see a lift

    assert refresh(mirror, client, budget_seconds=10, rebuild_seconds=0).filled
    assert mirror.reasons(["back@example.com", "still@example.com"], "L") == {
        "still@example.com": UNSUBSCRIBED}
    assert mirror.state().generation == 2
    assert not mirror.redis.exists(mirror.key(1))


def test_only_one_worker_refreshes_an_account_at_a_time(
        client: KlaviyoClient, mirror: OptOutMirror) -> None:
    with locks.held(mirror.redis, mirror.lock_key) as someone_else:
        assert someone_else
        outcome = refresh(mirror, client, budget_seconds=10)
    assert outcome.busy and not outcome.filled
