"""Export jobs, declared in a TOML file (``EXPORT_JOBS_FILE``) and validated at load.

One ``[[jobs]]`` table per job::

    [[jobs]]
    id = "vip"
    label = "VIP buyers"
    audiences = ["vip_buyers", "efdcc4da20554be02e90c563f69bc0ec"]
    new_list_name = "VIP (Lytics)"
    new_list_opt_in = "double"     # the default (Klaviyo's own), always sent; or "single"
    on_exit = "remove"             # or "keep": add-only, nobody is removed from the list
    resubscribe = false            # true: subscribe people who unsubscribed or are suppressed
    field_map = { first_name = "first_name", city = "location.city", ltv = "properties.ltv" }
    channels = ["email", "sms"]    # default ["email"]; "sms" needs phone_field
    phone_field = "mobile"         # the Lytics field with the phone (sent in E.164)
    email_consent_field = "email_opt_in_at"   # when the person gave email consent
    sms_consent_field = "sms_opt_in_at"       # when the person gave SMS consent
    historical_import = true       # past consent dates: no confirmation, no "added" flows
    without_consent_date = "omit"  # or "subscribe": people with no past date (historical)

A mistake raises :class:`JobsFileError` whose message names the job and the field.
"""

from __future__ import annotations

import os
import re
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core.settings import ConfigurationError

STANDARD_FIELDS = frozenset(
    {
        "email",
        "phone_number",
        "external_id",
        "first_name",
        "last_name",
        "organization",
        "locale",
        "title",
        "image",
    }
)
LOCATION_FIELDS = frozenset(
    {
        "address1",
        "address2",
        "city",
        "country",
        "region",
        "zip",
        "timezone",
        "ip",
        "latitude",
        "longitude",
    }
)
LYTICS_UID_FIELD = "_uid"  # Lytics' own user id: tells apart people without a usable email
_PROPERTY = re.compile(r"^properties\.[^.\s][^\s]*$")
_JOB_ID = r"^[a-z0-9][a-z0-9_-]{0,62}$"
OptIn = Literal["double", "single"]
OnExit = Literal["remove", "keep"]
Channel = Literal["email", "sms"]
WithoutConsentDate = Literal["subscribe", "omit"]
# the jobs file's words → Klaviyo's ``opt_in_process`` values
OPT_IN_PROCESS: dict[str, str] = {"double": "double_opt_in", "single": "single_opt_in"}


class JobsFileError(ConfigurationError):
    """The jobs file is missing, unreadable or describes an impossible job."""


class UnknownJobError(KeyError):
    """The jobs file has no job with this id."""

    def __str__(self) -> str:
        return f"no job {self.args[0]!r} in the jobs file"


def check_klaviyo_field(target: str) -> str:
    """Accept a standard attribute, ``location.<part>`` or ``properties.<name>``."""
    if target in STANDARD_FIELDS - {"email"}:
        return target
    if target.startswith("location.") and target.split(".", 1)[1] in LOCATION_FIELDS:
        return target
    if _PROPERTY.match(target):
        return target
    raise ValueError(
        f"unknown Klaviyo field {target!r}: use a standard attribute "
        f"({', '.join(sorted(STANDARD_FIELDS - {'email'}))}), location.<part> or properties.<name>"
    )


class ExportJob(BaseModel):
    """One Lytics→Klaviyo export: which audiences feed which list, and how."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=_JOB_ID)
    label: str = ""
    description: str = ""
    audiences: tuple[str, ...] = Field(min_length=1)
    list_id: str | None = None
    new_list_name: str | None = Field(default=None, min_length=1, max_length=255)
    # sent as opt_in_process when the product creates the list; "double" (Klaviyo's default)
    # unless the job says "single"; the bootstrap reads back what Klaviyo did either way
    new_list_opt_in: OptIn = "double"
    on_exit: OnExit = "remove"
    # audit --repair also removes people added to the list by hand (not only the job's own)
    mirror: bool = False
    # beat runs a full audit (no repair) of the list this often; 0 turns it off
    audit_every_hours: float = Field(default=24.0, ge=0)
    # the brake on mass removals: removals past this share of the list (and past
    # removal_brake_min people) within removal_brake_window_seconds wait for a person
    # (``klaviyo-export brake release``); 1 turns it off
    removal_brake: float = Field(default=0.2, gt=0, le=1)
    removal_brake_window_seconds: float = Field(default=600.0, gt=0)
    removal_brake_min: int = Field(default=1000, ge=0)
    email_field: str = "email"
    field_map: dict[str, str] = Field(default_factory=dict)
    force_add: bool = False
    # False (the default): people Klaviyo holds as unsubscribed or suppressed (globally, or
    # from this list) are never subscribed, since subscribing lifts their suppression; True
    # subscribes them anyway (their consent becomes subscribed again)
    resubscribe: bool = False
    # consent (README "Consent"): which channels a subscribe gives, where the phone and the
    # consent dates are in Lytics, and whether past consent is imported as history
    channels: tuple[Channel, ...] = ("email",)
    phone_field: str | None = Field(default=None, min_length=1)
    email_consent_field: str | None = Field(default=None, min_length=1)
    sms_consent_field: str | None = Field(default=None, min_length=1)
    historical_import: bool = False
    without_consent_date: WithoutConsentDate | None = None
    backfill: bool = True
    api_key_env: str = Field(default="KLAVIYO_API_KEY", pattern=r"^[A-Z_][A-Z0-9_]*$")
    webhook_token_env: str | None = Field(default=None, pattern=r"^[A-Z_][A-Z0-9_]*$")

    @field_validator("audiences")
    @classmethod
    def _audiences_named(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not a.strip() for a in value):
            raise ValueError("an audience id or slug is empty")
        return tuple(dict.fromkeys(a.strip() for a in value))

    @field_validator("field_map")
    @classmethod
    def _fields_known(cls, value: dict[str, str]) -> dict[str, str]:
        for target in value.values():
            check_klaviyo_field(target)
        return value

    @model_validator(mode="after")
    def _one_target_per_field(self) -> ExportJob:
        targets = list(self.field_map.values())
        doubled = {t for t in targets if targets.count(t) > 1}
        if doubled:
            raise ValueError(f"Klaviyo field(s) mapped twice: {', '.join(sorted(doubled))}")
        return self

    @model_validator(mode="after")
    def _resubscribe_needs_subscribe(self) -> ExportJob:
        if self.resubscribe and self.force_add:
            raise ValueError("resubscribe applies to subscribe jobs; a force_add job changes "
                             "no consent (drop one of the two)")
        return self

    @property
    def respects_opt_outs(self) -> bool:
        """True when the job's subscribes skip people who opted out (the opt-out mirror):
        every subscribe job unless ``resubscribe``; force-add changes no consent."""
        return not (self.force_add or self.resubscribe)

    @field_validator("channels")
    @classmethod
    def _channels_named(cls, value: tuple[Channel, ...]) -> tuple[Channel, ...]:
        if not value:
            raise ValueError('name at least one channel: ["email"], ["sms"] or both')
        return tuple(dict.fromkeys(value))

    @model_validator(mode="after")
    def _consent_fields_fit(self) -> ExportJob:
        problem = _consent_problem(self)
        if problem:
            raise ValueError(problem)
        return self

    def selects(self, audience: str) -> bool:
        """True when ``audience`` (a segment id or slug) is one this job exports."""
        return audience in self.audiences

    def list_name(self, today: datetime | None = None) -> str:
        """The name of the list to find or create when no ``list_id`` is given."""
        day = (today or datetime.now(UTC)).strftime("%Y-%m-%d")
        return self.new_list_name or f"Lytics {day}"

    @property
    def opt_in_process(self) -> str:
        """Klaviyo's ``opt_in_process`` for a list this job creates (always sent)."""
        return OPT_IN_PROCESS[self.new_list_opt_in]

    @property
    def removes_on_exit(self) -> bool:
        """False for an add-only job (``on_exit = "keep"``): nobody is removed from the list."""
        return self.on_exit == "remove"

    @property
    def subscribes_sms(self) -> bool:
        """True when a subscribe gives SMS marketing consent (``channels`` holds ``"sms"``)."""
        return "sms" in self.channels

    @property
    def subscribes_email(self) -> bool:
        """True when a subscribe gives email marketing consent (the default)."""
        return "email" in self.channels

    def consent_field(self, channel: Channel) -> str | None:
        """The Lytics field holding ``channel``'s consent date, if the job names one."""
        return self.email_consent_field if channel == "email" else self.sms_consent_field

    def lytics_fields(self) -> tuple[str, ...]:
        """The Lytics fields this job reads: the email field first, then the mapped ones, the
        phone and consent-date fields, then ``_uid`` (so people without a usable email are
        counted once each)."""
        consent = (self.phone_field, self.email_consent_field, self.sms_consent_field)
        return tuple(dict.fromkeys((self.email_field, *self.field_map,
                                    *(f for f in consent if f), LYTICS_UID_FIELD)))

    def api_key(self, environ: dict[str, str] | None = None) -> str:
        """This job's Klaviyo private key, from ``api_key_env``; never logged."""
        env = os.environ if environ is None else environ
        key = env.get(self.api_key_env, "")
        if not key:
            raise JobsFileError(
                f"job {self.id!r}: environment variable {self.api_key_env} is not set"
            )
        return key


class JobsFile(BaseModel):
    """The whole jobs file: ids must be unique, and no two jobs may own one Klaviyo list.

    Two jobs on one list would each remove the other's members (a user in job A's audiences
    is nobody job B wants), so the file is refused: per Klaviyo key, two jobs with the same
    ``list_id``, or two without a ``list_id`` that would find the same list by name.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    jobs: tuple[ExportJob, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> JobsFile:
        ids = [j.id for j in self.jobs]
        doubled = sorted({i for i in ids if ids.count(i) > 1})
        if doubled:
            raise ValueError(f"duplicate job id(s): {', '.join(doubled)}")
        return self

    @model_validator(mode="after")
    def _one_job_per_list(self) -> JobsFile:
        owner: dict[tuple[str, str], str] = {}
        for job in self.jobs:
            target = _list_target(job)
            first = owner.setdefault((job.api_key_env, target), job.id)
            if first != job.id:
                raise ValueError(
                    f"jobs {first!r} and {job.id!r} both export to {target}: each would remove "
                    "the other's members; give each job its own list"
                )
        return self

    def get(self, job_id: str) -> ExportJob:
        for job in self.jobs:
            if job.id == job_id:
                return job
        raise UnknownJobError(job_id)


def _consent_problem(job: ExportJob) -> str | None:
    """Why the job's consent fields do not fit together, or None (the first problem)."""
    missing = [f"{c}_consent_field" for c in job.channels if not job.consent_field(c)]
    checks = (
        (job.force_add and (job.historical_import or job.channels != ("email",)
                            or bool(job.email_consent_field or job.sms_consent_field)),
         "force_add adds to the list without changing consent: channels, consent fields and "
         "historical_import apply only to subscribing jobs"),
        (job.subscribes_sms and not job.phone_field,
         'channels includes "sms": name the Lytics field holding the phone (phone_field)'),
        (bool(job.phone_field) and "phone_number" in job.field_map.values(),
         "phone_field and field_map both set phone_number: keep one (phone_field also sends "
         "the phone with the SMS consent)"),
        (bool(job.sms_consent_field) and not job.subscribes_sms,
         'sms_consent_field is set but channels does not include "sms"'),
        (bool(job.email_consent_field) and not job.subscribes_email,
         'email_consent_field is set but channels does not include "email"'),
        (job.historical_import and bool(missing),
         f"historical_import needs the consent date of every channel: set "
         f"{' and '.join(missing)}"),
        (job.historical_import and job.without_consent_date is None,
         'historical_import: say what happens to people without a past consent date: '
         'without_consent_date = "subscribe" (a normal subscribe: a confirmation email on a '
         'double opt-in list) or "omit" (left out)'),
        (not job.historical_import and job.without_consent_date is not None,
         "without_consent_date applies only with historical_import = true"),
        (not job.historical_import and bool(job.email_consent_field or job.sms_consent_field),
         "a consent field is only read with historical_import = true (Klaviyo refuses a "
         "consent date on a normal subscribe)"),
    )
    return next((message for failed, message in checks if failed), None)


def _list_target(job: ExportJob) -> str:
    """How the job finds its list, as a phrase: by id, else by (new or default) name."""
    if job.list_id:
        return f"list_id {job.list_id!r}"
    if job.new_list_name:
        return f"the list named {job.new_list_name!r}"
    return "the default list name 'Lytics <date>'"


def _describe(exc: ValidationError, raw: dict[str, Any]) -> str:
    err = exc.errors()[0]
    loc = list(err["loc"])
    where = "jobs file"
    if len(loc) >= 2 and loc[0] == "jobs" and isinstance(loc[1], int):
        jobs = raw.get("jobs") or []
        job_id = (
            jobs[loc[1]].get("id", f"#{loc[1] + 1}") if loc[1] < len(jobs) else f"#{loc[1] + 1}"
        )
        where = f"job {job_id!r}"
        loc = loc[2:]
    field = ".".join(str(p) for p in loc)
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "literal_error":
        msg += f", not {err['input']!r}"
    return f"{where}: {field}: {msg}" if field else f"{where}: {msg}"


def parse_jobs(text: str) -> JobsFile:
    """Parse and validate jobs-file text; raise JobsFileError with one readable line."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise JobsFileError(f"jobs file is not valid TOML: {exc}") from None
    try:
        return JobsFile.model_validate(raw)
    except ValidationError as exc:
        raise JobsFileError(_describe(exc, raw)) from None


def load_jobs(path: Path) -> JobsFile:
    """Read the jobs file at ``path``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise JobsFileError(f"cannot read jobs file {path}: {exc.strerror}") from None
    return parse_jobs(text)


def check_keys(jobs: JobsFile, environ: dict[str, str] | None = None) -> list[str]:
    """Problems with the jobs' Klaviyo keys (missing or not private keys), one line each."""
    problems = []
    for job in jobs.jobs:
        try:
            key = job.api_key(environ)
        except JobsFileError as exc:
            problems.append(str(exc))
            continue
        if not key.startswith("pk_"):
            problems.append(
                f"job {job.id!r}: {job.api_key_env} is not a Klaviyo private key (pk_…)"
            )
    return problems
