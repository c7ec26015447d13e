"""One person's story for one job: "why isn't ann@ on the list?", answered from every source.

:func:`explain` gathers, for one email: the desired state per audience with each newest
event's time (Redis), what Klaviyo was last told and when (``applied``, ``applied-at``),
where the engine has them now (pending, held, settling, a removal waiting for a profile,
drift), their dead letters, their consent and suppressions as Klaviyo has them, and their
membership of the list read live from Klaviyo. :func:`verdict` says it in one sentence.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import redis

from core.jobs import ExportJob
from core.keys import JobKeys, account_ids_key
from core.redact import mask_email
from worker.engine.audit import patiently
from worker.engine.normalize import normalize_email
from worker.klaviyo import lists
from worker.klaviyo.client import KlaviyoClient
from worker.klaviyo.standing import standings
from worker.state import codes
from worker.state.deadletter import DeadLetterStore

EVENT_WORDS = {codes.ENTER: "entered", codes.EXIT: "exited", codes.CHANGE: "changed"}


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _iso_ns(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / 1e9, UTC).isoformat(timespec="milliseconds")


def _iso_ms(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1e3, UTC).isoformat(timespec="milliseconds")


def applied_words(code: str | None) -> str:
    """What an ``applied`` code says Klaviyo was told, for people."""
    if not code:
        return "nothing yet"
    head = code.partition(codes.FIELDS_SEP)[0]
    return {
        codes.APPLIED_IN: "subscribed (or force-added)",
        codes.APPLIED_TRY: "a subscribe or force-add whose outcome is unknown",
        codes.OUT: "removed from the list",
        codes.OUT_NO_PROFILE: "nothing to remove (no profile)",
        codes.OUT_UNCONFIRMED: "removal never confirmed (no profile appeared in time)",
    }.get(head, code)


def desired_story(store: redis.Redis, keys: JobKeys, job: ExportJob, email: str) -> dict[str, Any]:
    """The desired state and the engine's bookkeeping for one email (Redis only)."""
    pipe = store.pipeline(transaction=False)
    pipe.hgetall(keys.user(email))
    pipe.hget(keys.applied, email)
    pipe.hget(keys.applied_at, email)
    pipe.zscore(keys.pending, email)
    pipe.zscore(keys.inflight, email)
    pipe.zscore(keys.settling, email)
    pipe.hget(keys.removal_waits, email)
    pipe.zscore(keys.drift, email)
    pipe.get(keys.fields(email))
    marks, code, at, pending, held, settling, waiting, drift, fields = pipe.execute()
    audiences = {}
    for audience, value in sorted((_text(k), _text(v)) for k, v in marks.items()):
        action, _, ts = str(value).partition(codes.EVENT_SEP)
        audiences[str(audience)] = {"event": EVENT_WORDS.get(action, action),
                                    "at": _iso_ns(int(ts)), "selected": job.selects(str(audience))}
    member = any(a["event"] == "entered" and a["selected"] for a in audiences.values())
    raw_fields = _text(fields)
    engine = {name: _iso_ms(float(score)) for name, score in (
        ("pending_since", pending), ("held_until", held), ("settling_until", settling),
        ("removal_waiting_since", waiting), ("drift_since", drift)) if score is not None}
    return {
        "known": bool(audiences), "member": member, "audiences": audiences,
        "told": {"code": _text(code), "words": applied_words(_text(code)),
                 "at": _iso_ms(float(at)) if at else None},
        "fields_at": _iso_ns(int(raw_fields.partition(codes.FIELDS_SEP)[0]))
        if raw_fields else None,
        "engine": engine,
    }


def explain(job: ExportJob, raw_email: str, *, list_id: str, opt_in_process: str | None,
            client: KlaviyoClient, store: redis.Redis, keys: JobKeys) -> dict[str, Any]:
    """Everything known about ``raw_email`` for ``job`` (module doc), as plain data."""
    email = normalize_email(raw_email)
    if email is None:
        raise ValueError(f"{mask_email(raw_email)} is not a usable email address")
    story = desired_story(store, keys, job, email)
    letters = DeadLetterStore(store, keys.prefix, keys.job_id)
    story["dead_letters"] = [
        {"at": d.at.isoformat(), "reason": d.reason, "source": d.source, "detail": d.detail}
        for d in letters.list(letters.cap) if d.email.lower() == email]
    found = patiently(lambda: standings(client, [email])).get(email)
    cached = _text(store.hget(account_ids_key(keys.prefix, client.account), email))
    story["klaviyo"] = {
        "profile_id": found.profile_id if found else cached,
        "profile": found is not None,
        "consent": found.consent if found else None,
        "consent_at": found.consent_timestamp if found else None,
        "double_optin": found.double_optin if found else None,
        "can_receive_email_marketing": found.can_receive if found else None,
        "suppression": list(found.suppressions) if found else [],
        "list_suppressions": [s for s in found.list_suppressions
                              if s.get("list_id") == list_id] if found else [],
        "suppressed_for_list": found.suppressed_for(list_id) if found else None,
    }
    member = patiently(lambda: lists.find_member(client, list_id, email))
    story["on_list"] = {"member": member is not None,
                        "joined_group_at": (member.joined_group_at.isoformat()
                                            if member and member.joined_group_at else None)}
    story |= {"job": job.id, "list_id": list_id, "email": email,
              "confirms": opt_in_process == "double_opt_in" and not job.force_add}
    story["verdict"] = verdict(story)
    return story


def verdict(story: dict[str, Any]) -> str:
    """The story in one sentence: where the person is, where they should be, and why."""
    on_list, should = story["on_list"]["member"], story["member"]
    if not story["known"]:
        return _stranger(story, on_list)
    if on_list == should:
        return ("on the list, as they should be" if on_list
                else "off the list, as they should be (in none of the job's audiences)")
    if story["engine"]:
        return "the engine is still working on them: " + ", ".join(story["engine"])
    if should:
        return _missing(story)
    return "on the list although in none of the job's audiences: `audit --repair` removes them"


def _stranger(story: dict[str, Any], on_list: bool) -> str:
    if on_list:
        return "on the list, but this job never had them (added by hand)"
    if not story["klaviyo"]["profile"]:
        return "unknown: neither this job nor Klaviyo has heard of this email"
    return "not in this job's audiences, and not on the list"


def _missing(story: dict[str, Any]) -> str:
    suppressed = story["klaviyo"]["suppressed_for_list"]
    if story["dead_letters"]:
        return "should be on the list, but Klaviyo refused them (dead-lettered)"
    if suppressed:
        return f"should be on the list, but Klaviyo suppresses them: {suppressed}"
    if (story["confirms"] and story["klaviyo"]["consent"] != "SUBSCRIBED"
            and str(story["told"]["code"] or "").startswith(codes.APPLIED_IN)):
        return "should be on the list: awaiting their confirmation (double opt-in list)"
    return "should be on the list and is not: `audit --repair` subscribes them again"
