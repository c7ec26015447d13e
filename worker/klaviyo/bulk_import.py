"""Klaviyo bulk profile import jobs: submit up to 10,000 profiles, then poll the job.

A job upserts profiles and, given a list, adds them to it without changing consent.
Its 202 means accepted, not done: poll :func:`get_bulk_import`, then read per-profile
failures with :func:`iter_import_errors` and the resulting ids with
:func:`iter_job_profiles` / :func:`iter_job_profile_ids`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from contract import operations as ops
from core.redact import redact
from worker.klaviyo.client import KlaviyoClient
from worker.klaviyo.pagination import SIZE, iter_resources, page_size

FINISHED = frozenset({"complete", "cancelled"})
UNFINISHED = ("queued", "processing")  # the spec's other statuses


@dataclass(frozen=True)
class BulkImportJob:
    """A bulk import job's progress."""

    id: str
    status: str  # queued, processing, complete, cancelled
    total: int
    completed: int
    failed: int

    @property
    def finished(self) -> bool:
        """True once Klaviyo will do no more work on the job."""
        return self.status in FINISHED

    @classmethod
    def from_resource(cls, resource: dict[str, Any]) -> BulkImportJob:
        """Build from a ``profile-bulk-import-job`` resource object."""
        attributes = resource.get("attributes") or {}
        return cls(
            id=str(resource["id"]),
            status=str(attributes.get("status") or ""),
            total=int(attributes.get("total_count") or 0),
            completed=int(attributes.get("completed_count") or 0),
            failed=int(attributes.get("failed_count") or 0),
        )


@dataclass(frozen=True)
class ImportFailure:
    """One profile a job could not import; ``email`` is kept out of ``repr``."""

    code: str
    title: str
    detail: str  # redacted: emails masked
    email: str | None = field(repr=False)
    pointer: str | None

    @classmethod
    def from_resource(cls, resource: dict[str, Any]) -> ImportFailure:
        """Build from an ``import-error`` resource object."""
        attributes = resource.get("attributes") or {}
        source = attributes.get("source") or {}
        return cls(
            code=str(attributes.get("code") or ""),
            title=redact(str(attributes.get("title") or "")),
            detail=redact(str(attributes.get("detail") or "")),
            email=_payload_email(attributes.get("original_payload")),
            pointer=source.get("pointer"),
        )


def _payload_email(payload: Any) -> str | None:
    """The email of the submitted profile, flat or as a resource object."""
    if not isinstance(payload, dict):
        return None
    nested = payload.get("attributes")
    email = nested.get("email") if isinstance(nested, dict) else payload.get("email")
    return email if isinstance(email, str) else None


def bulk_import_body(
    profiles: Sequence[dict[str, Any]], list_id: str | None = None
) -> dict[str, Any]:
    """The ``bulk_import_profiles`` request body; ``list_id`` adds every profile to it."""
    data: dict[str, Any] = {
        "type": "profile-bulk-import-job",
        "attributes": {
            "profiles": {"data": [{"type": "profile", "attributes": p} for p in profiles]},
        },
    }
    if list_id is not None:
        data["relationships"] = {"lists": {"data": [{"type": "list", "id": list_id}]}}
    return {"data": data}


def create_bulk_import(
    client: KlaviyoClient, profiles: Sequence[dict[str, Any]], list_id: str | None = None
) -> BulkImportJob:
    """Submit a job for ``profiles`` (≤10,000, ≤5 MB, ≤100 KB each); return it as queued."""
    if not profiles:
        raise ValueError("create_bulk_import needs at least one profile")
    response = client.call(ops.BULK_IMPORT, body=bulk_import_body(profiles, list_id))
    return BulkImportJob.from_resource((response.document or {})["data"])


def get_bulk_import(client: KlaviyoClient, job_id: str) -> BulkImportJob:
    """The current progress of job ``job_id``."""
    document = client.call(ops.GET_BULK_IMPORT, path={"job_id": job_id}).document or {}
    return BulkImportJob.from_resource(document["data"])


def iter_unfinished_imports(client: KlaviyoClient) -> Iterator[BulkImportJob]:
    """Every import job of the account Klaviyo is still working on, 100 a page: one call
    answers for up to 100 jobs, however many of them are ours."""
    op = ops.GET_BULK_IMPORTS
    statuses = ",".join(f'"{s}"' for s in UNFINISHED)
    params = {SIZE: page_size(op), "filter": f"any(status,[{statuses}])"}
    for resource in iter_resources(client, op, params=params):
        yield BulkImportJob.from_resource(resource)


def iter_import_errors(client: KlaviyoClient, job_id: str) -> Iterator[ImportFailure]:
    """Every profile job ``job_id`` failed to import, page by page."""
    op = ops.GET_BULK_IMPORT_ERRORS
    for resource in iter_resources(client, op, path={"id": job_id}, params={SIZE: page_size(op)}):
        yield ImportFailure.from_resource(resource)


def iter_job_profiles(client: KlaviyoClient, job_id: str) -> Iterator[tuple[str, str | None]]:
    """``(id, email)`` of every profile job ``job_id`` created or updated."""
    op = ops.GET_BULK_IMPORT_PROFILES
    params = {SIZE: page_size(op), "fields[profile]": "email"}
    for resource in iter_resources(client, op, path={"id": job_id}, params=params):
        yield str(resource["id"]), (resource.get("attributes") or {}).get("email")


def iter_job_profile_ids(client: KlaviyoClient, job_id: str) -> Iterator[str]:
    """The id of every profile job ``job_id`` created or updated."""
    op = ops.GET_BULK_IMPORT_PROFILE_IDS
    for resource in iter_resources(client, op, path={"id": job_id}, params={SIZE: page_size(op)}):
        yield str(resource["id"])
