"""A job's lifecycle, as an operator drives it: pause, resume, stop, and audiences changed.

- :func:`pause`: the job's status becomes ``paused``. Events are still recorded (the desired
  state keeps up), but every path that would call Klaviyo (flush, backfill chunk, import poll,
  bootstrap) reads the status first and sends nothing.
- :func:`resume`: back to ``ready``, and a flush is asked for, so what is pending is applied.
- :func:`stop`: ``stopped``, then every key of the job except its state and run history is
  forgotten (desired state, pending users, counters, dead letters, the unfinished backfill).
  The Klaviyo list is not touched. Events for a stopped job are dropped; ``start`` begins again.
- :func:`drop_audiences`: an audience removed from the jobs file stops counting towards
  membership: its entry leaves every user's desired state and each such user is pended, so a
  member left in no other selected audience is removed from the list, and one still in another
  stays. The job state remembers the audiences last exported (``JobState.audiences``); beat's
  sweep and ``start`` compare them with the jobs file (:func:`audience_changes`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import redis

from core.jobs import ExportJob
from core.keys import JobKeys, current_run_key
from worker.state import locks
from worker.state.jobstate import JobStateStore, Status

log = logging.getLogger(__name__)
Scheduler = Callable[[str, float], None]
SCAN_COUNT = 1000

# KEYS[1] pending | ARGV[1] now ms, ARGV[2] number of audiences, audiences..., then user keys;
# the user keys start with ARGV[#ARGV - n] (their email follows the prefix in ARGV[3 + n])
_DROP = """
local now, n = ARGV[1], tonumber(ARGV[2])
local plen = string.len(ARGV[3 + n])
local pended = 0
for i = 4 + n, #ARGV do
  local gone = 0
  for a = 3, 2 + n do gone = gone + redis.call('HDEL', ARGV[i], ARGV[a]) end
  if gone > 0 then
    redis.call('ZADD', KEYS[1], 'LT', now, string.sub(ARGV[i], plen + 1))
    pended = pended + 1
  end
end
return pended
"""


@dataclass(frozen=True)
class AudienceChanges:
    """The jobs file's audiences against those the job last exported."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


def audience_changes(job: ExportJob, store: JobStateStore) -> AudienceChanges:
    """What changed since the audiences were last recorded (nothing when never recorded)."""
    known = store.get().audiences
    if known is None:
        return AudienceChanges()
    return AudienceChanges(
        added=tuple(a for a in job.audiences if a not in known),
        removed=tuple(a for a in known if a not in job.audiences),
    )


def pause(store: JobStateStore) -> None:
    store.pause()
    log.warning("job %s paused: events are recorded, nothing is sent to Klaviyo",
                store.keys.job_id)


def resume(store: JobStateStore, schedule: Scheduler) -> int:
    """Resume the job and ask for a flush; return how many users are pending."""
    pending = int(store.redis.zcard(store.keys.pending))
    store.resume()
    schedule(store.keys.job_id, 0.0)
    log.warning("job %s resumed: %d pending user(s) to apply", store.keys.job_id, pending)
    return pending


def stop(store: JobStateStore) -> int:
    """Stop the job and forget its state (the list stays); return how many keys went."""
    store.stop()
    keys = store.keys
    kept = {keys.state, keys.runs}
    forgotten = 0
    client = store.redis
    batch: list[Any] = []
    for key in client.scan_iter(match=keys.every_key_pattern, count=SCAN_COUNT):
        name = key.decode() if isinstance(key, bytes) else str(key)
        if name in kept:
            continue
        batch.append(name)
        if len(batch) >= SCAN_COUNT:
            forgotten += int(client.unlink(*batch))
            batch = []
    if batch:
        forgotten += int(client.unlink(*batch))
    forgotten += int(client.unlink(current_run_key(keys.prefix, keys.job_id)))
    log.warning("job %s stopped: %d key(s) of its state forgotten; the Klaviyo list is kept",
                keys.job_id, forgotten)
    return forgotten


def restart(store: JobStateStore, job: ExportJob) -> None:
    """``start`` on a stopped job: its state begins again from nothing."""
    store.restart()
    store.set_audiences(job.audiences)


def drop_audiences(client: redis.Redis, keys: JobKeys, removed: tuple[str, ...],
                   now_ms: int | None = None) -> int:
    """Take ``removed`` out of every user's desired state and pend those it touched.

    Returns the users pended; 0 also when another process holds the lock (it does the work).
    """
    if not removed:
        return 0
    with locks.held(client, keys.audiences_lock) as mine:
        return _drop_all(client, keys, removed, now_ms) if mine else 0


def _drop_all(client: redis.Redis, keys: JobKeys, removed: tuple[str, ...],
              now_ms: int | None) -> int:
    now = int(time.time() * 1000) if now_ms is None else now_ms
    script = client.register_script(_DROP)
    prefix = keys.users_pattern[:-1]
    pended = 0
    batch: list[str] = []
    for key in client.scan_iter(match=keys.users_pattern, count=SCAN_COUNT):
        batch.append(key.decode() if isinstance(key, bytes) else str(key))
        if len(batch) >= SCAN_COUNT:
            pended += _drop(script, keys, now, removed, prefix, batch=batch)
            batch = []
    if batch:
        pended += _drop(script, keys, now, removed, prefix, batch=batch)
    return pended


def _drop(script: Any, keys: JobKeys, now: int, removed: tuple[str, ...], prefix: str, *,
          batch: list[str]) -> int:
    args: list[str | int] = [now, len(removed), *removed, prefix, *batch]
    return int(script(keys=[keys.pending], args=args))


def follow_audiences(job: ExportJob, store: JobStateStore, schedule: Scheduler) -> AudienceChanges:
    """Apply removed audiences (their members re-checked) and record the audiences in force.

    Added audiences are only reported: their members arrive through events from now on and
    through the next ``start``'s backfill, which then records them as exported.
    """
    if store.get().audiences is None:
        store.set_audiences(job.audiences)
        return AudienceChanges()
    changes = audience_changes(job, store)
    if changes.removed:
        pended = drop_audiences(store.redis, store.keys, changes.removed)
        kept = tuple(a for a in cast("tuple[str, ...]", store.get().audiences)
                     if a not in changes.removed)
        store.set_audiences(kept)
        log.warning("job %s: audience(s) %s removed from the jobs file: %d user(s) re-checked",
                    job.id, ", ".join(changes.removed), pended)
        if pended and store.status() is not Status.STOPPED:
            schedule(job.id, 0.0)
    return changes
