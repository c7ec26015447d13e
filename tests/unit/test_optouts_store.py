"""The opt-out mirror's store (real Redis): digests, not addresses; global and per-list
reasons; generations put in force whole; and nothing answers before the first fill."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import redis

from worker.klaviyo.suppressions import KINDS, SUPPRESSED, UNSUBSCRIBED, OptOut, opt_out
from worker.state.optouts import DONE, MirrorNotFilled, OptOutMirror

T = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture
def mirror(redis_client: redis.Redis) -> OptOutMirror:
    return OptOutMirror(redis_client, "test", "acct1")


def filled(mirror: OptOutMirror, *opt_outs: OptOut) -> OptOutMirror:
    mirror.begin_build(1, T)
    mirror.record(1, opt_outs)
    mirror.switch(1, dict.fromkeys(KINDS, T))
    return mirror


def test_before_the_first_fill_the_mirror_refuses_to_answer(mirror: OptOutMirror) -> None:
    """"Nobody opted out" and "we do not know" must not look alike."""
    with pytest.raises(MirrorNotFilled):
        mirror.reasons(["ann@example.com"], "L1")
    mirror.begin_build(1, T)
    mirror.record(1, [OptOut("ann@example.com", UNSUBSCRIBED)])
    with pytest.raises(MirrorNotFilled):  # a fill being built is not in force
        mirror.reasons(["ann@example.com"], "L1")
    assert not mirror.state().filled


def test_global_and_list_reasons_one_lookup(mirror: OptOutMirror) -> None:
    filled(mirror, OptOut("ann@example.com", UNSUBSCRIBED),
           OptOut("bob@example.com", SUPPRESSED),
           OptOut("cy@example.com", None, {"L1": UNSUBSCRIBED}),
           OptOut("di@example.com", SUPPRESSED, {"L1": UNSUBSCRIBED}))
    emails = ["ann@example.com", "bob@example.com", "cy@example.com", "di@example.com",
              "eve@example.com"]
    assert mirror.reasons(emails, "L1") == {
        "ann@example.com": UNSUBSCRIBED, "bob@example.com": SUPPRESSED,
        "cy@example.com": UNSUBSCRIBED,  # from this list only
        "di@example.com": SUPPRESSED}  # a global reason wins
    assert "cy@example.com" not in mirror.reasons(emails, "L2")


def test_the_mirror_holds_digests_never_addresses(mirror: OptOutMirror) -> None:
    filled(mirror, OptOut("ann@example.com", UNSUBSCRIBED, {"L1": SUPPRESSED}))
    fields = mirror.redis.hkeys(mirror.key(1))
    assert len(fields) == 2 and not any("ann" in str(f) or "@" in str(f) for f in fields)
    assert all(len(str(f).split(":")[0]) == 16 for f in fields)  # 8 bytes, hex
    assert mirror.reasons(["ANN@example.com "], "L1") == {"ANN@example.com ": UNSUBSCRIBED}


def test_a_profile_read_again_without_a_global_suppression_is_cleared(
        mirror: OptOutMirror) -> None:
    filled(mirror, OptOut("ann@example.com", SUPPRESSED))
    mirror.record(1, [OptOut("ann@example.com", None, {"L9": SUPPRESSED})])
    assert mirror.reasons(["ann@example.com"], "L1") == {}
    assert mirror.reasons(["ann@example.com"], "L9") == {"ann@example.com": SUPPRESSED}


def test_a_rebuild_is_put_in_force_whole_and_drops_the_old_generation(
        mirror: OptOutMirror) -> None:
    filled(mirror, OptOut("ann@example.com", UNSUBSCRIBED))
    mirror.begin_build(2, T)
    mirror.save_cursor("suppression", "abc")
    state = mirror.state()
    assert (state.generation, state.building, state.cursors["suppression"]) == (1, 2, "abc")
    mirror.record(2, [OptOut("bob@example.com", SUPPRESSED)])
    assert mirror.reasons(["ann@example.com", "bob@example.com"], "L") == {
        "ann@example.com": UNSUBSCRIBED}  # generation 1 answers until 2 is complete
    mirror.save_cursor("suppression", None)
    assert mirror.state().cursors["suppression"] == DONE
    mirror.switch(2, dict.fromkeys(KINDS, T))
    assert mirror.reasons(["ann@example.com", "bob@example.com"], "L") == {
        "bob@example.com": SUPPRESSED}
    assert not mirror.redis.exists(mirror.key(1))
    state = mirror.state()
    assert (state.generation, state.building, state.cursors, state.since["suppression"]) == (
        2, None, {}, T)



@pytest.mark.parametrize(("marketing", "reason", "lists"), [
    ({"consent": "UNSUBSCRIBED", "suppression": [{"reason": "UNSUBSCRIBE"}]}, UNSUBSCRIBED, {}),
    ({"consent": "UNSUBSCRIBED", "suppression": []}, UNSUBSCRIBED, {}),
    ({"consent": "SUBSCRIBED", "suppression": [{"reason": "HARD_BOUNCE"}]}, SUPPRESSED, {}),
    ({"consent": "NEVER_SUBSCRIBED", "suppression": [{"reason": "USER_SUPPRESSED"}]},
     SUPPRESSED, {}),
    ({"consent": "SUBSCRIBED", "suppression": [], "list_suppressions": [
        {"list_id": "L1", "reason": "UNSUBSCRIBE"}, {"list_id": "L2", "reason": "SPAM_COMPLAINT"}]},
     None, {"L1": UNSUBSCRIBED, "L2": SUPPRESSED}),
])
def test_a_profile_resource_says_why(marketing: dict[str, object], reason: str | None,
                                     lists: dict[str, str]) -> None:
    resource = {"type": "profile", "id": "P", "attributes": {
        "email": "Ann@Example.com", "subscriptions": {"email": {"marketing": marketing}}}}
    assert opt_out(resource) == OptOut("ann@example.com", reason, lists)
