"""A backfill run in Redis, shared by the producer that writes it and the workers that run it.

A run lives under ``{prefix}:bf:{job}:{run}`` (``core.keys.RunKeys``): a hash of progress
counters and the producer's checkpoint, the chunks themselves (``:chunk:{n}``, one row per
person: ``core.chunks``) and guard sets (``:done``, ``:segs``) that make every count happen
once, however often a message is delivered. ``{prefix}:bf:{job}:current`` names the
unfinished run a rerun resumes.

The run hash's fields: ``status`` (``running``, ``finished``), ``source``, ``started_at``,
``finished_at``, ``ts_ns`` (the snapshot time), ``chunk_size``, ``checkpoint``, ``total``,
``segments``, ``dispatched``, ``profiles_dispatched``, ``dispatch_done`` (the producer's);
``profiles``, ``exported``, ``failed``, ``omitted:<reason>``, ``done``, ``segments_done``,
``dead_lettered``, ``last_error`` (the workers').

A finished run leaves a summary in the job's run history (``{prefix}:job:{job}:runs``, newest
first, at most ``MAX_HISTORY``): :func:`record_run` writes one (a backfill's when it finishes;
any other kind of run, such as an audit, may add its own with a ``kind``), :func:`history`
reads them, for ``klaviyo-export runs``.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import redis

from core.chunks import Chunk, chunk_from_json, chunk_json
from core.keys import JobKeys, RunKeys, counters_key, current_run_key

CHUNK_TTL = 7 * 86400
RUN_TTL = 30 * 86400
MAX_HISTORY = 100  # runs kept per job

# done set, run hash, results hash, job counters | n, result json, run deltas..., '|', job deltas...
_COMMIT = """
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return redis.call('HGET', KEYS[3], ARGV[1]) end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
local target, i = KEYS[2], 3
while i <= #ARGV do
  if ARGV[i] == '|' then target = KEYS[4]; i = i + 1
  else redis.call('HINCRBY', target, ARGV[i], ARGV[i+1]); i = i + 2 end
end
return ARGV[2]
"""

# run hash | finished-at: finalize once, when dispatch is over and every chunk is counted.
# Chunks, not chord bodies, decide: a worker killed between claiming a chord's callback and
# publishing it loses that callback for good (Celery's Redis backend), never a chunk's count.
_FINALIZE = """
local h = redis.call('HMGET', KEYS[1], 'dispatch_done', 'dispatched', 'done')
if h[1] ~= '1' or tonumber(h[3] or '0') < tonumber(h[2] or '0') then return 0 end
return redis.call('HSETNX', KEYS[1], 'finished_at', ARGV[1])
"""


class RunStore:
    """One backfill run's keys and the few atomic operations on them."""

    def __init__(self, client: redis.Redis, prefix: str, job_id: str, run_id: str) -> None:
        self.redis = client
        self.prefix, self.job_id, self.run_id = prefix, job_id, run_id
        self.keys = RunKeys(prefix, job_id, run_id)
        self.key = self.keys.run

    def chunk_key(self, n: int) -> str:
        return self.keys.chunk(n)

    def save_chunk(self, n: int, rows: list[dict[str, Any]], omitted: dict[str, int]) -> None:
        """Chunk ``n``: people as ``ChunkRow`` dicts, and those left out before it by reason."""
        self.redis.set(self.chunk_key(n), chunk_json(rows, omitted), ex=CHUNK_TTL)

    def load_chunk(self, n: int) -> Chunk | None:
        raw = self.redis.get(self.chunk_key(n))
        return None if raw is None else chunk_from_json(raw)

    def stored_result(self, n: int) -> dict[str, Any] | None:
        raw = self.redis.hget(self.keys.results, str(n))
        return None if raw is None else dict(orjson.loads(raw))

    def commit(self, n: int, result: dict[str, Any], job_deltas: dict[str, int]) -> dict[str, Any]:
        """Count a chunk's result once; a redelivered chunk gets the first result back."""
        body = orjson.dumps(result, option=orjson.OPT_SORT_KEYS).decode()
        argv: list[str | int] = [n, body]
        for name in ("profiles", "exported", "failed"):
            argv += [name, int(result.get(name, 0))]
        for reason, count in result.get("omitted", {}).items():
            argv += [f"omitted:{reason}", count]
        argv += ["done", 1, "|"]
        for name, count in job_deltas.items():
            argv += [name, count]
        keys = [self.keys.done, self.key, self.keys.results,
                counters_key(self.prefix, self.job_id)]
        out = self.redis.register_script(_COMMIT)(keys=keys, args=argv)
        self.redis.delete(self.chunk_key(n))
        self.try_finalize()
        return dict(orjson.loads(out))

    def segment_done(self, seg: int) -> bool:
        """Count a segment once (progress); True when this call finished the run."""
        if self.redis.sadd(self.keys.segments, seg):
            self.redis.hincrby(self.key, "segments_done", 1)
        return self.try_finalize()

    def try_finalize(self) -> bool:
        now = f"{time.time():.3f}"
        if not self.redis.register_script(_FINALIZE)(keys=[self.key], args=[now]):
            return False
        self._summarize()
        return True

    def _summarize(self) -> None:
        letters = self.redis.hget(counters_key(self.prefix, self.job_id), "dead_lettered")
        current = current_run_key(self.prefix, self.job_id)
        pipe = self.redis.pipeline()
        pipe.hset(self.key, mapping={"status": "finished", "dead_lettered": int(letters or 0)})
        for key in (self.key, self.keys.done, self.keys.segments, self.keys.results):
            pipe.expire(key, RUN_TTL)
        pipe.execute()
        if _text(self.redis.get(current)) == self.run_id:
            self.redis.delete(current)
        record_run(self.redis, self.prefix, self.job_id, summary(self.run_id, self.progress()))

    def progress(self) -> dict[str, str]:
        return {_text(k): _text(v) for k, v in self.redis.hgetall(self.key).items()}


def summary(run_id: str, raw: dict[str, str]) -> dict[str, Any]:
    """A backfill run's hash as a history entry: times, counts, omitted by reason, throughput."""
    def num(name: str) -> int:
        return int(raw.get(name) or 0)

    started, finished = float(raw.get("started_at") or 0), float(raw.get("finished_at") or 0)
    seconds = max(finished - started, 0.0) if started and finished else None
    profiles = num("profiles")
    return {
        "kind": "backfill", "run": run_id, "source": raw.get("source", ""),
        "status": raw.get("status", "unknown"),
        "started_at": started or None, "finished_at": finished or None, "seconds": seconds,
        "profiles": profiles, "exported": num("exported"), "failed": num("failed"),
        "omitted": {k.removeprefix("omitted:"): int(v) for k, v in sorted(raw.items())
                    if k.startswith("omitted:") and int(v)},
        "dead_lettered": num("dead_lettered"),
        "per_second": round(profiles / seconds, 1) if seconds else None,
        "last_error": raw.get("last_error") or None,
    }


def audit_entry(found: dict[str, Any]) -> dict[str, Any]:
    """A finished audit's summary (``worker.engine.audit.Audit.summary``) as a history entry:
    when the read began and the audit ended, members read, missing and extra by kind, and
    members read per second."""
    def by_kind(side: str) -> dict[str, int]:
        kinds = found.get("breakdown", {}).get(side, {})
        return {k: int(v["count"]) for k, v in sorted(kinds.items()) if v["count"]}

    started = float(found.get("read_started_at") or 0) or None
    finished = float(found.get("at") or 0) or None
    read_seconds = float(found.get("seconds") or 0)
    members = int(found.get("list_members") or 0)
    return {
        "kind": "audit", "run": f"a{int((finished or time.time()) * 1000)}",
        "source": f"list {found.get('list_id', '')}", "status": "finished",
        "started_at": started, "finished_at": finished,
        "seconds": round(finished - started, 3) if started and finished else None,
        "members": members, "desired_members": int(found.get("desired_members") or 0),
        "in_transit": int(found.get("in_transit") or 0),
        "missing": int(found.get("missing") or 0), "extra": int(found.get("extra") or 0),
        "missing_by_kind": by_kind("missing"), "extra_by_kind": by_kind("extra"),
        "per_second": round(members / read_seconds, 1) if read_seconds else None,
    }


def record_run(client: redis.Redis, prefix: str, job_id: str, entry: dict[str, Any]) -> None:
    """Add a finished run (``kind``: ``backfill``, ``audit``...) to the job's bounded history."""
    key = JobKeys(prefix, job_id).runs
    pipe = client.pipeline()
    pipe.lpush(key, orjson.dumps(entry, option=orjson.OPT_SORT_KEYS))
    pipe.ltrim(key, 0, MAX_HISTORY - 1)
    pipe.execute()


def history(client: redis.Redis, prefix: str, job_id: str, limit: int = MAX_HISTORY
            ) -> list[dict[str, Any]]:
    """The job's finished runs, newest first."""
    raw = client.lrange(JobKeys(prefix, job_id).runs, 0, max(limit, 1) - 1)
    return [dict(orjson.loads(item)) for item in raw]


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")
