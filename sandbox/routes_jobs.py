"""Bulk import jobs and subscribe jobs: accepted with 202, completed shortly after."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from sandbox import errors, paging
from sandbox.clock import iso
from sandbox.filters import parse_filter
from sandbox.identity import email_error, job_id
from sandbox.jobs import ITEMS, ImportJob, SubscribeJob, UnsubscribeJob
from sandbox.pipeline import Ctx, Handler, Reply
from sandbox.profiles import profile_resource
from sandbox.upsert import identity_problem
from sandbox.validation import page_size

MAX_PROBLEMS = 100  # per-profile errors listed in one 400


def bulk_subscribe_profiles(ctx: Ctx) -> Reply:
    """``POST /api/profile-subscription-bulk-create-jobs``: 202, no body (as Klaviyo).

    The job id is in the ``X-Sandbox-Job-Id`` header, for ``/_sandbox/subscribe-jobs/{id}``.
    """
    data = ctx.body["data"]
    attributes = data["attributes"]
    profiles = attributes["profiles"]["data"]
    historical = bool(attributes.get("historical_import"))
    _check_consent(profiles, historical)
    if ctx.sandbox.realism.subscribe_rejects_invalid_email:
        _refuse_invalid_emails(profiles)
    list_id = _list_id(ctx, data)
    job = SubscribeJob(id=job_id(), account=ctx.account.fingerprint, list_id=list_id,
                       historical=historical, custom_source=attributes.get("custom_source"),
                       created_at=iso(), total=len(profiles), payload=profiles)
    ctx.account.subscribe_jobs[job.id] = job
    ctx.sandbox.subscribe_jobs[job.id] = job
    ctx.sandbox.schedule(ctx.account, job)
    return Reply(202, None, items=len(profiles), headers={"X-Sandbox-Job-Id": job.id})


def bulk_unsubscribe_profiles(ctx: Ctx) -> Reply:
    """``POST /api/profile-subscription-bulk-delete-jobs``: 202, no body, asynchronous.

    A profile on the given list leaves it (a list suppression); anyone else is
    unsubscribed globally, as the spec's warning says. The job id is in
    ``X-Sandbox-Job-Id`` for ``/_sandbox/subscribe-jobs/{id}``."""
    data = ctx.body["data"]
    profiles = data["attributes"]["profiles"]["data"]
    job = UnsubscribeJob(id=job_id(), account=ctx.account.fingerprint,
                         list_id=_list_id(ctx, data), created_at=iso(), total=len(profiles),
                         payload=profiles)
    ctx.account.subscribe_jobs[job.id] = job
    ctx.sandbox.subscribe_jobs[job.id] = job
    ctx.sandbox.schedule(ctx.account, job)
    return Reply(202, None, items=len(profiles), headers={"X-Sandbox-Job-Id": job.id})


def _list_id(ctx: Ctx, data: dict[str, Any]) -> str | None:
    """The job's list, which must exist in this account (404 otherwise)."""
    list_id: str | None = _get(data, "relationships", "list", "data", "id")
    if list_id is not None and list_id not in ctx.account.lists:
        raise errors.not_found(f"List {list_id} does not exist.",
                               pointer="/data/relationships/list/data/id")
    return list_id


def _refuse_invalid_emails(profiles: list[dict[str, Any]]) -> None:
    """A subscribe job naming a malformed email is refused whole, before it is queued."""
    problems = [errors.problem(400, "invalid", "Invalid input.", why,
                               pointer=f"{ITEMS}/{i}/attributes/email")
                for i, p in enumerate(profiles)
                if (email := _get(p, "attributes", "email")) and (why := email_error(email))]
    if problems:
        raise errors.ApiError(400, problems[:MAX_PROBLEMS])


def _get(node: Any, *keys: str) -> Any:
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def _check_consent(profiles: list[dict[str, Any]], historical: bool) -> None:
    """One pass over the job (it runs for every subscribe call): ``historical_import`` needs a
    past ``consented_at`` for every consent given, and without the flag any ``consented_at`` is
    an error (spec ``SubscriptionParameters``); an SMS subscription needs the item's
    ``phone_number`` (Klaviyo's 400 "'phone_number' must not be empty when the sms channel is
    included", klaviyo-api-node #95)."""
    if not historical:  # the usual job: no dates, email only; found at C speed, not per item
        flat = orjson.dumps(profiles)
        if b'"consented_at"' not in flat and b'"sms"' not in flat:
            return
    now = datetime.now(UTC)
    for index, profile in enumerate(profiles):
        attrs = profile.get("attributes") or {}
        for channel, params in (attrs.get("subscriptions") or {}).items():
            if channel == "sms" and params is not None and not attrs.get("phone_number"):
                raise errors.invalid("'phone_number' must not be empty when the sms channel is "
                                     "included in 'subscriptions'.",
                                     pointer=f"{ITEMS}/{index}/attributes/phone_number")
            marketing = params.get("marketing") if isinstance(params, dict) else None
            if channel not in ("email", "sms") or marketing is None:
                continue
            stamp = marketing.get("consented_at")
            if stamp is None and not historical:
                continue
            pointer = f"{ITEMS}/{index}/attributes/subscriptions/{channel}/marketing/consented_at"
            _check_stamp(stamp, historical, now, pointer)


def _check_stamp(stamp: Any, historical: bool, now: datetime, pointer: str) -> None:
    if not historical:
        raise errors.invalid("consented_at may only be given when historical_import is true.",
                             pointer=pointer)
    if not stamp:
        raise errors.invalid("consented_at is required when historical_import is true.",
                             pointer=pointer)
    try:
        when = datetime.fromisoformat(stamp)
    except (TypeError, ValueError):
        raise errors.invalid("consented_at is not a date-time.", pointer=pointer) from None
    if (when if when.tzinfo else when.replace(tzinfo=UTC)) > now:
        raise errors.invalid("consented_at must be in the past.", pointer=pointer)


def bulk_import_profiles(ctx: Ctx) -> Reply:
    """``POST /api/profile-bulk-import-jobs``: 202 with the queued job."""
    data = ctx.body["data"]
    profiles = data["attributes"]["profiles"]["data"]
    relations = _get(data, "relationships", "lists", "data") or []
    if ctx.sandbox.realism.bulk_import_rejects_whole_job:
        _refuse_malformed(profiles)
    for index, relation in enumerate(relations):
        if relation["id"] not in ctx.account.lists:
            raise errors.not_found(f"List {relation['id']} does not exist.",
                                   pointer=f"/data/relationships/lists/data/{index}/id")
    job = ImportJob(id=job_id(), created_at=iso(), total=len(profiles),
                    list_ids=[r["id"] for r in relations], payload=profiles)
    ctx.account.import_jobs[job.id] = job
    ctx.sandbox.schedule(ctx.account, job)
    doc = {"data": job.resource(ctx.base),
           "links": {"self": f"{ctx.base}/api/profile-bulk-import-jobs"}}
    return Reply(202, doc, items=len(profiles))


def _refuse_malformed(profiles: list[dict[str, Any]]) -> None:
    """One profile that fails synchronous validation fails the whole import: 400, one
    error per bad profile, each pointing at its index."""
    problems = [errors.problem(400, "invalid", "Invalid input.", exc.detail,
                               pointer=f"{ITEMS}/{i}{exc.pointer}")
                for i, p in enumerate(profiles) if (exc := identity_problem(p)) is not None]
    if problems:
        raise errors.ApiError(400, problems[:MAX_PROBLEMS])


def _job(ctx: Ctx, name: str) -> ImportJob:
    job = ctx.account.import_jobs.get(ctx.path(name))
    if job is None:
        raise errors.not_found(f"Bulk import job {ctx.path(name)} does not exist.")
    return job


def get_bulk_import_profiles_job(ctx: Ctx) -> Reply:
    """``GET /api/profile-bulk-import-jobs/{job_id}`` (``include=lists`` supported)."""
    job = _job(ctx, "job_id")
    doc: dict[str, Any] = {"data": job.resource(ctx.base), "links": {"self": str(ctx.request.url)}}
    if ctx.wants("include", "lists"):
        doc["included"] = [ctx.account.lists[i].resource(ctx.base) for i in job.list_ids
                           if i in ctx.account.lists]
    return Reply(200, doc, items=1)


IMPORT_JOB_FILTER_FIELDS = {"status"}  # the spec: `status` with `any` and `equals`


def get_bulk_import_profiles_jobs(ctx: Ctx) -> Reply:
    """``GET /api/profile-bulk-import-jobs``: the account's import jobs, ``filter`` on status
    (``equals``/``any``), ``sort`` by ``created_at``, 20 a page by default, 100 at most."""
    conditions = parse_filter(ctx.query("filter"), IMPORT_JOB_FILTER_FIELDS)
    found = [job for job in ctx.account.import_jobs.values()
             if all(job.status in c.values for c in conditions)]
    found.sort(key=lambda job: job.created_at, reverse=ctx.query("sort") == "-created_at")
    page, cursor = paging.offset_page(ctx.request, found,
                                      page_size(ctx.op, ctx.query("page[size]"), 20))
    data = [job.resource(ctx.base) for job in page]
    return Reply(200, paging.collection(ctx.request, data, cursor), items=len(data))


def get_errors_for_bulk_import_profiles_job(ctx: Ctx) -> Reply:
    """``GET .../import-errors``: one ``import-error`` per refused profile."""
    job = _job(ctx, "id")
    numbered = list(enumerate(job.errors))
    page, cursor = paging.offset_page(ctx.request, numbered,
                                      page_size(ctx.op, ctx.query("page[size]"), 20))
    data = [{"type": "import-error", "id": f"{job.id}-{n}", "attributes": e} for n, e in page]
    return Reply(200, paging.collection(ctx.request, data, cursor), items=len(data))


def get_profiles_for_bulk_import_profiles_job(ctx: Ctx) -> Reply:
    """``GET .../profiles``: the profiles the job wrote."""
    job = _job(ctx, "id")
    page, cursor = paging.offset_page(ctx.request, job.profile_ids,
                                      page_size(ctx.op, ctx.query("page[size]"), 20))
    subs = ctx.wants("additional-fields[profile]", "subscriptions")
    data = [profile_resource(ctx.account.profiles[pid], ctx.base, with_subscriptions=subs)
            for pid in page]
    return Reply(200, paging.collection(ctx.request, data, cursor), items=len(data))


def get_profile_ids_for_bulk_import_profiles_job(ctx: Ctx) -> Reply:
    """``GET .../relationships/profiles``: their ids."""
    job = _job(ctx, "id")
    page, cursor = paging.offset_page(ctx.request, job.profile_ids,
                                      page_size(ctx.op, ctx.query("page[size]"), 20))
    data = [{"type": "profile", "id": pid} for pid in page]
    return Reply(200, paging.collection(ctx.request, data, cursor), items=len(data))


HANDLERS: dict[str, Handler] = {
    "bulk_subscribe_profiles": bulk_subscribe_profiles,
    "bulk_import_profiles": bulk_import_profiles,
    "bulk_unsubscribe_profiles": bulk_unsubscribe_profiles,
    "get_bulk_import_profiles_job": get_bulk_import_profiles_job,
    "get_bulk_import_profiles_jobs": get_bulk_import_profiles_jobs,
    "get_errors_for_bulk_import_profiles_job": get_errors_for_bulk_import_profiles_job,
    "get_profiles_for_bulk_import_profiles_job": get_profiles_for_bulk_import_profiles_job,
    "get_profile_ids_for_bulk_import_profiles_job": get_profile_ids_for_bulk_import_profiles_job,
}
