"""Resolve the Klaviyo list a job writes to, exactly once across every worker.

- A selected ``list_id`` must exist; otherwise the job fails with the reason and
  nothing is created (a selected list wins over a new name).
- A list resolved earlier is re-checked; if it was deleted the job fails rather
  than silently creating another.
- Otherwise find a list by its exact name, else create it, under a Redis lock so
  that two workers never create two lists. A created list asks for the job's
  ``new_list_opt_in``.
- Every time, the list's ``opt_in_process`` is read back from Klaviyo and kept in the job
  state: Klaviyo may create a double opt-in list although single was asked for (single opt-in
  is not enabled on every account), so it is never assumed. A job that asked for single and
  has a double opt-in list gets a note, logged once.
"""

from __future__ import annotations

import logging

from core.jobs import ExportJob
from worker.klaviyo import lists
from worker.klaviyo.client import KlaviyoClient
from worker.klaviyo.errors import AuthError, NotFound
from worker.state import locks
from worker.state.jobstate import JobStateStore, Status

DOUBLE = "double_opt_in"
log = logging.getLogger(__name__)


class BootstrapBusy(Exception):
    """Another worker holds the bootstrap lock; try again shortly."""


def bootstrap(job: ExportJob, store: JobStateStore, client: KlaviyoClient) -> str | None:
    """Make sure the job has a list; return its id, or None when the job failed (or is
    paused or stopped: then nothing is sent)."""
    if store.get().held:
        return None
    try:
        return _resolve(job, store, client)
    except AuthError as exc:
        store.auth_failed(f"Klaviyo refused the key ({exc.status}): {exc}")
        return None


def _resolve(job: ExportJob, store: JobStateStore, client: KlaviyoClient) -> str | None:
    state = store.get()
    known = job.list_id or state.list_id
    if known:
        return _check_existing(
            known, job=job, selected=bool(job.list_id), store=store, client=client
        )
    if state.status is Status.FAILED:
        return None
    return _find_or_create(job, store, client)


def _check_existing(
    list_id: str, *, job: ExportJob, selected: bool, store: JobStateStore, client: KlaviyoClient
) -> str | None:
    try:
        found = lists.get_list(client, list_id)
    except NotFound:
        why = "does not exist" if selected and not store.get().list_id else "was deleted in Klaviyo"
        store.failed(f"list {list_id} {why}; fix the job (nothing was created)")
        return None
    store.ready(found.id)
    # a list remembered from an earlier bootstrap may be one the product created: keep its note
    _record_opt_in(job, store, found, created=False if selected else None)
    return found.id


def _find_or_create(job: ExportJob, store: JobStateStore, client: KlaviyoClient) -> str | None:
    with locks.held(store.redis, store.keys.bootstrap_lock) as mine:
        if not mine:
            raise BootstrapBusy(job.id)
        if store.get().list_id:  # another worker finished while we waited
            return store.get().list_id
        name = job.list_name()
        found = lists.find_list_by_name(client, name)
        created = found is None
        if found is None:
            made = lists.create_list(client, name, job.opt_in_process)
            found = lists.get_list(client, made.id)  # what Klaviyo did, not what was asked
        store.ready(found.id, reason=f"list {name!r}")
        _record_opt_in(job, store, found, created=created)
        return found.id


def opt_in_note(job: ExportJob, found: lists.KlaviyoList, *, created: bool) -> str:
    """Why the list's opt-in is not what the job asked for, in plain words; "" when it is."""
    if job.new_list_opt_in != "single" or found.opt_in_process != DOUBLE:
        return ""
    why = ("Klaviyo created it double opt-in (single opt-in is not enabled on this account)"
           if created else "it already existed as double opt-in (new_list_opt_in applies "
           "only to lists the product creates)")
    return (f"asked for single opt-in, but list {found.id} is double opt-in: {why}; people "
            "join only after confirming the email Klaviyo sends them")


def _record_opt_in(
    job: ExportJob, store: JobStateStore, found: lists.KlaviyoList, *, created: bool | None
) -> None:
    """Keep the opt-in Klaviyo reports; log a new mismatch once (``created`` None: unknown)."""
    before = store.get().opt_in_note
    note = opt_in_note(job, found, created=bool(created))
    if note and created is None and before:
        note = before
    if note and note != before:
        log.warning("job %s: %s", job.id, note)
    store.opt_in(found.opt_in_process, note)
