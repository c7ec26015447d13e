"""Force-add users are split into bulk imports under Klaviyo's count and size caps."""

from __future__ import annotations

from worker.engine.imports import MAX_BYTES, MAX_PROFILES, chunks
from worker.engine.plan import profile_attributes
from worker.state.desired import Desired


def users(n: int, note: str = "") -> list[Desired]:
    attributes = {"properties": {"note": note}} if note else {}
    return [Desired(f"u{i}@example.com", True, "", attributes, None) for i in range(n)]


def sizes(batches: list[list[Desired]]) -> list[int]:
    return [len(b) for b in batches]


def test_a_batch_under_both_caps_is_one_import() -> None:
    assert sizes(list(chunks(users(MAX_PROFILES), profile_attributes))) == [MAX_PROFILES]


def test_no_users_make_no_import() -> None:
    assert list(chunks([], profile_attributes)) == []


def test_more_than_ten_thousand_users_are_split_by_count() -> None:
    batches = list(chunks(users(25_000), profile_attributes))
    assert sizes(batches) == [10_000, 10_000, 5_000]
    assert [u.email for b in batches for u in b] == [u.email for u in users(25_000)]


def test_large_profiles_are_split_by_size_in_order() -> None:
    """3,000 profiles of about 2 KB exceed 4 MB together: two imports, order kept."""
    many = users(3000, note="x" * 2000)
    batches = list(chunks(many, profile_attributes))
    assert len(batches) == 2 and sum(sizes(batches)) == 3000
    assert [u.email for b in batches for u in b] == [u.email for u in many]
    assert all(len(b) * 2000 < MAX_BYTES for b in batches)
