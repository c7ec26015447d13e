"""Asynchronous jobs: bulk profile imports and bulk subscriptions.

A job is accepted (202, ``queued``), starts (``processing``) and completes a
moment later (see ``Sandbox.schedule``); only then are its profiles written. A bad
profile fails alone: it is counted in ``failed_count`` and described in the import
job's ``import-errors`` (or the subscribe job's ``failures``); the rest proceed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sandbox.account import Account
from sandbox.consent import lift_for_subscribe, unsubscribe
from sandbox.identity import email_error, phone_error
from sandbox.lists import ListRec
from sandbox.profiles import Profile, consent, sms_consent
from sandbox.upsert import ProfileProblem, upsert

ITEMS = "/data/attributes/profiles/data"


@dataclass(kw_only=True)
class JobProgress:
    """Where a job stands: its status, when it started and completed, and its counts."""

    status: str = "queued"
    started_at: str | None = None
    completed_at: str | None = None
    completed: int = 0
    failed: int = 0


@dataclass
class ImportJob(JobProgress):
    """A ``profile-bulk-import-job``."""

    id: str
    created_at: str
    total: int
    list_ids: list[str]
    payload: list[dict[str, Any]] | None
    errors: list[dict[str, Any]] = field(default_factory=list)
    profile_ids: list[str] = field(default_factory=list)

    def resource(self, base: str) -> dict[str, Any]:
        """The JSON:API resource object."""
        url = f"{base}/api/profile-bulk-import-jobs/{self.id}"
        attributes = {"status": self.status, "created_at": self.created_at,
                      "total_count": self.total, "completed_count": self.completed,
                      "failed_count": self.failed, "started_at": self.started_at,
                      "completed_at": self.completed_at, "expires_at": None}
        lists = {"data": [{"type": "list", "id": i} for i in self.list_ids],
                 "links": {"self": f"{url}/relationships/lists", "related": f"{url}/lists"}}
        return {"type": "profile-bulk-import-job", "id": self.id, "attributes": attributes,
                "relationships": {
                    "lists": lists,
                    "profiles": {"links": {"self": f"{url}/relationships/profiles",
                                           "related": f"{url}/profiles"}},
                    "import-errors": {"links": {"related": f"{url}/import-errors"}}},
                "links": {"self": url}}


@dataclass
class SubscribeJob(JobProgress):
    """A ``profile-subscription-bulk-create-job`` (Klaviyo offers no GET for it)."""

    id: str
    account: str
    list_id: str | None
    historical: bool
    custom_source: str | None
    created_at: str
    total: int
    payload: list[dict[str, Any]] | None
    failures: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """What ``GET /_sandbox/subscribe-jobs/{id}`` shows."""
        return {"id": self.id, "account": self.account, "list_id": self.list_id,
                "status": self.status, "historical_import": self.historical,
                "created_at": self.created_at, "started_at": self.started_at,
                "completed_at": self.completed_at, "total_count": self.total,
                "completed_count": self.completed, "failed_count": self.failed,
                "failures": self.failures}


@dataclass
class UnsubscribeJob(JobProgress):
    """A ``profile-subscription-bulk-delete-job`` (no GET either; admin route only)."""

    id: str
    account: str
    list_id: str | None
    created_at: str
    total: int
    payload: list[dict[str, Any]] | None
    failures: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """What ``GET /_sandbox/subscribe-jobs/{id}`` shows."""
        return {"id": self.id, "kind": "unsubscribe", "account": self.account,
                "list_id": self.list_id, "status": self.status, "created_at": self.created_at,
                "started_at": self.started_at, "completed_at": self.completed_at,
                "total_count": self.total, "completed_count": self.completed,
                "failed_count": self.failed, "failures": self.failures}


Job = ImportJob | SubscribeJob | UnsubscribeJob


def run_import(account: Account, job: ImportJob, now: str, *, nulls_clear: bool = True,
               with_payload: bool = True, conflicts: bool = False) -> None:
    """Upsert every profile of the job, force-adding each to the job's lists."""
    lists = [lst for i in job.list_ids if (lst := account.lists.get(i)) is not None]
    for index, resource in enumerate(job.payload or ()):
        try:
            profile, _ = upsert(account, resource, now, nulls_clear=nulls_clear,
                                conflicts=conflicts)
        except ProfileProblem as exc:
            job.failed += 1
            error = {"code": exc.code, "title": "Invalid profile.", "detail": exc.detail,
                     "source": {"pointer": f"{ITEMS}/{index}{exc.pointer}"}}
            if with_payload:
                error["original_payload"] = resource.get("attributes") or {}
            job.errors.append(error)
            continue
        job.completed += 1
        job.profile_ids.append(profile.id)
        for lst in lists:
            lst.add(profile.id, account.next_seq(), now)
    job.payload = None


def run_subscribe(account: Account, job: SubscribeJob, now: str) -> list[str]:
    """Subscribe every profile; on a double opt-in list they wait for confirmation.
    Returns the ids of the profiles that became pending."""
    lst = account.lists.get(job.list_id) if job.list_id else None
    batch = _Batch(account, lst, job, now)
    for index, resource in enumerate(job.payload or ()):
        failure = _subscribe_one(batch, resource.get("attributes") or {})
        if failure is None:
            job.completed += 1
            continue
        job.failed += 1
        code = "duplicate_profile" if failure[0].endswith("/phone_number") and \
            "belongs" in failure[1] else "invalid"
        job.failures.append({"index": index, "code": code, "detail": failure[1],
                             "pointer": f"{ITEMS}/{index}{failure[0]}"})
    job.payload = None
    return batch.newly_pending


def run_unsubscribe(account: Account, job: UnsubscribeJob, now: str) -> None:
    """Unsubscribe every profile (created when missing, as Klaviyo does): from the job's
    list when on it, globally otherwise."""
    lst = account.lists.get(job.list_id) if job.list_id else None
    for index, resource in enumerate(job.payload or ()):
        attrs = resource.get("attributes") or {}
        email, phone = attrs.get("email"), attrs.get("phone_number")
        why = (email_error(email) if email else None) or (phone_error(phone) if phone else None)
        if why or not (email or phone):
            job.failed += 1
            job.failures.append({"index": index, "code": "invalid",
                                 "detail": why or "An email or a phone_number is required.",
                                 "pointer": f"{ITEMS}/{index}/attributes"})
            continue
        profile = _find_or_create(account, email, phone, now)
        if email and (((attrs.get("subscriptions") or {}).get("email") or {}).get("marketing")
                      is not None):
            unsubscribe(account, profile, lst, now)
        job.completed += 1
    job.payload = None


class _Batch:
    """One subscribe job being applied; consent records are shared (never mutated)."""

    def __init__(self, account: Account, lst: ListRec | None, job: SubscribeJob,
                 now: str) -> None:
        self.account = account
        self.lst = lst
        self.pending = lst is not None and lst.double_opt_in and not job.historical
        self.custom_source = job.custom_source
        self.now = now
        self.newly_pending: list[str] = []
        self._email: dict[str, dict[str, Any]] = {}
        self._sms: dict[str, dict[str, Any]] = {}

    def email_consent(self, stamp: str) -> dict[str, Any]:
        """SUBSCRIBED email consent as of ``stamp``."""
        found = self._email.get(stamp)
        if found is None:
            found = self._email[stamp] = consent(stamp, double_optin=False,
                                                 custom_source=self.custom_source)
        return found

    def sms_consent(self, stamp: str) -> dict[str, Any]:
        """SUBSCRIBED SMS consent as of ``stamp``."""
        found = self._sms.get(stamp)
        if found is None:
            found = self._sms[stamp] = sms_consent(stamp, self.custom_source)
        return found


def _subscribe_one(batch: _Batch, attrs: dict[str, Any]) -> tuple[str, str] | None:
    email, phone = attrs.get("email"), attrs.get("phone_number")
    if not email and not phone:
        return "/attributes", "An email or a phone_number is required."
    if email and (why := email_error(email)):
        return "/attributes/email", why
    if phone and (why := phone_error(phone)):
        return "/attributes/phone_number", why
    account, lst, now = batch.account, batch.lst, batch.now
    profile = _find_or_create(account, email, phone, now)
    subs = attrs.get("subscriptions") or {}
    email_marketing = (subs.get("email") or {}).get("marketing")
    if email and email_marketing:
        lift_for_subscribe(account, profile, lst.id if lst is not None else None)
    if email and email_marketing and not batch.pending:
        profile.email_marketing = batch.email_consent(email_marketing.get("consented_at") or now)
    sms_marketing = (subs.get("sms") or {}).get("marketing")
    conflict = None
    if phone and sms_marketing:
        if account.owner("phone_number", phone) in (None, profile.id):
            account.set_identifier(profile, "phone_number", phone)  # the phone consent is for
            profile.sms_marketing = batch.sms_consent(sms_marketing.get("consented_at") or now)
        else:  # another profile's phone: no SMS consent is recorded for either (unverified)
            conflict = ("/attributes/phone_number",
                        "This phone_number already belongs to another profile.")
    profile.updated = now
    if lst is not None:
        if not batch.pending:
            lst.add(profile.id, account.next_seq(), now)
        elif profile.id not in lst.members and profile.id not in lst.pending:
            lst.pending[profile.id] = now
            batch.newly_pending.append(profile.id)
    return conflict


def _find_or_create(account: Account, email: str | None, phone: str | None,
                    now: str) -> Profile:
    """The profile with this email (without an email: with this phone), created when
    missing; free identifiers it lacks are filled in. A new email with another profile's
    phone gets its own profile (the email is the stronger identifier, as in upsert.py)."""
    emails, phones = account.index["email"], account.index["phone_number"]
    key = email.strip().lower() if email else None
    pid = emails.get(key) if key else None
    if pid is None and phone and not key:
        pid = phones.get(phone)
    profile = account.profiles[pid] if pid is not None else account.create_profile(now)
    attrs = profile.attrs
    if key and "email" not in attrs and key not in emails:
        attrs["email"] = email
        emails[key] = profile.id
    if phone and "phone_number" not in attrs and phone not in phones:
        attrs["phone_number"] = phone
        phones[phone] = profile.id
    return profile


def confirm(account: Account, lst: ListRec, pids: list[str], now: str) -> int:
    """Confirm pending double opt-ins: consent recorded, profile joins the list."""
    count = 0
    for pid in pids:
        if pid in lst.pending and (profile := account.profiles.get(pid)) is not None:
            profile.email_marketing = consent(now, double_optin=True, custom_source=None)
            lst.add(pid, account.next_seq(), now)
            count += 1
    return count
