"""Resolve the Klaviyo list a job writes to, exactly once across every worker.

- A selected ``list_id`` must exist; otherwise the job fails with the reason and
  nothing is created (a selected list wins over a new name).
- A list resolved earlier is re-checked; if it was deleted the job fails rather
  than silently creating another.
- Otherwise find a list by its exact name, else create it, under a Redis lock so
  that two workers never create two lists.
"""

from __future__ import annotations

import uuid

from core.jobs import ExportJob
from worker.klaviyo import lists
from worker.klaviyo.client import KlaviyoClient
from worker.klaviyo.errors import AuthError, NotFound
from worker.state.jobstate import JobStateStore, Status

LOCK_MS = 30_000


class BootstrapBusy(Exception):
    """Another worker holds the bootstrap lock; try again shortly."""


def bootstrap(job: ExportJob, store: JobStateStore, client: KlaviyoClient) -> str | None:
    """Make sure the job has a list; return its id, or None when the job failed."""
    try:
        return _resolve(job, store, client)
    except AuthError as exc:
        store.auth_failed(f"Klaviyo refused the key ({exc.status}): {exc}")
        return None


def _resolve(job: ExportJob, store: JobStateStore, client: KlaviyoClient) -> str | None:
    state = store.get()
    known = job.list_id or state.list_id
    if known:
        return _check_existing(known, selected=bool(job.list_id), store=store, client=client)
    if state.status is Status.FAILED:
        return None
    return _find_or_create(job, store, client)


def _check_existing(
    list_id: str, *, selected: bool, store: JobStateStore, client: KlaviyoClient
) -> str | None:
    try:
        found = lists.get_list(client, list_id)
    except NotFound:
        why = "does not exist" if selected and not store.get().list_id else "was deleted in Klaviyo"
        store.failed(f"list {list_id} {why}; fix the job (nothing was created)")
        return None
    store.ready(found.id)
    return found.id


def _find_or_create(job: ExportJob, store: JobStateStore, client: KlaviyoClient) -> str | None:
    redis = store.redis
    token = uuid.uuid4().hex
    if not redis.set(store.keys.bootstrap_lock, token, nx=True, px=LOCK_MS):
        raise BootstrapBusy(job.id)
    try:
        if store.get().list_id:  # another worker finished while we waited
            return store.get().list_id
        name = job.list_name()
        found = lists.find_list_by_name(client, name)
        if found is None:
            found = lists.create_list(client, name)
        store.ready(found.id, reason=f"list {name!r}")
        return found.id
    finally:
        if redis.get(store.keys.bootstrap_lock) in (token, token.encode()):
            redis.delete(store.keys.bootstrap_lock)
