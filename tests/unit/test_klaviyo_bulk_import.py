"""Bulk import jobs: submit up to 10,000 profiles, poll, read failures and resulting ids."""

from __future__ import annotations

from typing import Any

import pytest
import responses

from contract import operations as ops
from contract.spec import validate_request, validate_response
from tests.unit.klaviyo_fakes import BASE, sent
from worker.klaviyo.bulk_import import (
    BulkImportJob,
    ImportFailure,
    create_bulk_import,
    get_bulk_import,
    iter_import_errors,
    iter_job_profile_ids,
    iter_job_profiles,
)
from worker.klaviyo.client import KlaviyoClient
from worker.klaviyo.errors import BatchTooLarge

JOBS = f"{BASE}/api/profile-bulk-import-jobs"


def job(status: str = "queued", total: int = 2, completed: int | None = 0,
        failed: int | None = 0) -> dict[str, Any]:
    """A ``profile-bulk-import-job`` document as Klaviyo returns it."""
    return {"data": {
        "type": "profile-bulk-import-job", "id": "J1", "links": {"self": f"{JOBS}/J1"},
        "attributes": {"status": status, "created_at": "2026-07-15T10:00:00+00:00",
                       "total_count": total, "completed_count": completed,
                       "failed_count": failed},
    }}


RICH = {
    "email": "ann@example.com", "first_name": "Ann", "last_name": None, "phone_number": None,
    "location": {"city": "Oslo", "country": "Norway", "latitude": "59.91", "zip": None},
    "properties": {"lytics_segment": "buyers", "score": 0.5},
}


class TestCreate:
    """Submitting a job."""

    @pytest.mark.parametrize("list_id", [None, "L1"])
    def test_body_is_spec_valid(
        self, client: KlaviyoClient, rsps: responses.RequestsMock, list_id: str | None
    ) -> None:
        """Profiles go out as resource objects; a list id adds a lists relationship."""
        validate_response(ops.BULK_IMPORT, 202, job())
        rsps.post(JOBS, status=202, json=job())

        created = create_bulk_import(client, [RICH, {"email": "bob@example.com"}], list_id)

        body = sent(rsps)
        validate_request(ops.BULK_IMPORT, body)
        items = body["data"]["attributes"]["profiles"]["data"]
        assert items[0] == {"type": "profile", "attributes": RICH}
        lists = body["data"].get("relationships", {}).get("lists", {}).get("data")
        assert lists == ([{"type": "list", "id": list_id}] if list_id else None)
        assert created == BulkImportJob("J1", "queued", 2, 0, 0)

    def test_no_profiles_is_an_error(
        self, client: KlaviyoClient, rsps: responses.RequestsMock
    ) -> None:
        """An empty job is a caller bug, refused without a call."""
        with pytest.raises(ValueError, match="at least one"):
            create_bulk_import(client, [])
        assert len(rsps.calls) == 0

    def test_over_ten_thousand_refused(
        self, client: KlaviyoClient, rsps: responses.RequestsMock
    ) -> None:
        """10,001 profiles are refused before sending."""
        profiles = [{"email": f"u{i}@x.io"} for i in range(10_001)]

        with pytest.raises(BatchTooLarge, match=r"bulk_import_profiles: 10,001 items"):
            create_bulk_import(client, profiles, "L1")
        assert len(rsps.calls) == 0


class TestPoll:
    """Polling a job and reading what it did."""

    def test_get_job(self, client: KlaviyoClient, rsps: responses.RequestsMock) -> None:
        """Progress is read; null counts mean zero."""
        document = job("complete", total=3, completed=2, failed=None)
        validate_response(ops.GET_BULK_IMPORT, 200, document)
        rsps.get(f"{JOBS}/J1", json=document)

        polled = get_bulk_import(client, "J1")

        assert polled == BulkImportJob("J1", "complete", 3, 2, 0)
        assert polled.finished

    def test_import_errors(self, client: KlaviyoClient, rsps: responses.RequestsMock) -> None:
        """Each failure names its email (kept out of repr), its pointer and a masked detail."""
        document = {"data": [
            {"type": "import-error", "id": "E1", "attributes": {
                "code": "invalid", "title": "Invalid email",
                "detail": "bad@@example.com is not an email; nor is ann@example.com",
                "source": {"pointer": "/data/attributes/profiles/data/0"},
                "original_payload": {"email": "ann@example.com"}}},
            {"type": "import-error", "id": "E2", "attributes": {
                "code": "invalid", "title": "Invalid", "detail": "no identifier",
                "source": {"pointer": None},
                "original_payload": {"type": "profile", "attributes": {"email": "b@x.io"}}}},
        ], "links": {"self": f"{JOBS}/J1/import-errors"}}
        validate_response(ops.GET_BULK_IMPORT_ERRORS, 200, document)
        rsps.get(f"{JOBS}/J1/import-errors", json=document)

        failures = list(iter_import_errors(client, "J1"))

        assert [f.email for f in failures] == ["ann@example.com", "b@x.io"]
        first = failures[0]
        assert isinstance(first, ImportFailure)
        assert first.pointer == "/data/attributes/profiles/data/0"
        assert "ann@example.com" not in first.detail
        assert "ann@example.com" not in repr(first)

    def test_job_profiles(self, client: KlaviyoClient, rsps: responses.RequestsMock) -> None:
        """The job's profiles come back as (id, email) and as ids."""
        profiles = {"data": [{"type": "profile", "id": "P1", "attributes": {"email": "a@x.io"},
                              "links": {"self": f"{BASE}/api/profiles/P1"}}],
                    "links": {"self": f"{JOBS}/J1/profiles"}}
        ids = {"data": [{"type": "profile", "id": "P1"}],
               "links": {"self": f"{JOBS}/J1/relationships/profiles"}}
        validate_response(ops.GET_BULK_IMPORT_PROFILES, 200, profiles)
        validate_response(ops.GET_BULK_IMPORT_PROFILE_IDS, 200, ids)
        rsps.get(f"{JOBS}/J1/profiles", json=profiles)
        rsps.get(f"{JOBS}/J1/relationships/profiles", json=ids)

        assert list(iter_job_profiles(client, "J1")) == [("P1", "a@x.io")]
        assert list(iter_job_profile_ids(client, "J1")) == ["P1"]
