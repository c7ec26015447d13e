"""A backfill run's progress read from its hash, and told in words: one line with rate and
ETA (``status``), and the summary of a finished run. ``console/progress.py`` draws it live
(``start --wait``)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import redis

from core.keys import RunKeys, last_run_key


@dataclass(frozen=True)
class Progress:
    """The numbers of one run, read from its hash."""

    run_id: str
    status: str
    total: int | None
    dispatched: int  # profiles written to chunks and sent
    done: int  # profiles in finished chunks
    exported: int
    failed: int
    dead_lettered: int
    omitted: dict[str, int] = field(default_factory=dict)
    started_at: float = 0.0
    finished_at: float = 0.0

    @property
    def finished(self) -> bool:
        return self.status == "finished"

    def rate(self, now: float) -> float:
        end = self.finished_at or now
        return self.done / max(end - self.started_at, 1e-3) if self.started_at else 0.0


def from_hash(run_id: str, raw: dict[str, str]) -> Progress:
    def num(name: str) -> int:
        return int(raw.get(name) or 0)

    return Progress(
        run_id=run_id, status=raw.get("status", "unknown"),
        total=int(raw["total"]) if raw.get("total") else None,
        dispatched=num("profiles_dispatched"), done=num("profiles"), exported=num("exported"),
        failed=num("failed"), dead_lettered=num("dead_lettered"),
        omitted={k.removeprefix("omitted:"): int(v) for k, v in sorted(raw.items())
                 if k.startswith("omitted:")},
        started_at=float(raw.get("started_at") or 0),
        finished_at=float(raw.get("finished_at") or 0),
    )


def line(p: Progress, now: float) -> str:
    """``run: done/total profiles (pct), rate/s, ETA``."""
    total = p.total if p.total is not None else (p.dispatched if p.status == "finished" else None)
    rate = p.rate(now)
    of = f"{p.done:,}/{total:,}" if total else f"{p.done:,}/?"
    pct = f" ({100 * p.done / total:.0f}%)" if total else ""
    eta = ""
    if total and rate > 0 and not p.finished:
        eta = f", ETA {_duration(max(total - p.done, 0) / rate)}"
    return f"backfill {p.run_id}: {of} profiles{pct}, {rate:,.0f}/s{eta}"


def summary(p: Progress) -> str:
    """What the run did, once finished."""
    omitted = sum(p.omitted.values())
    reasons = ", ".join(f"{k} {v:,}" for k, v in p.omitted.items())
    return (f"backfill {p.run_id} {p.status}: exported {p.exported:,}, "
            f"omitted {omitted:,}" + (f" ({reasons})" if reasons else "")
            + f", failed {p.failed:,}, dead-lettered {p.dead_lettered:,}")


def _duration(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def latest(client: redis.Redis, prefix: str, job_id: str) -> Progress | None:
    """The job's newest backfill run, or None when it never had one."""
    run_id = client.get(last_run_key(prefix, job_id))
    if not run_id:
        return None
    rid = run_id.decode() if isinstance(run_id, bytes) else str(run_id)
    raw = client.hgetall(RunKeys(prefix, job_id, rid).run)
    return from_hash(rid, {_s(k): _s(v) for k, v in raw.items()}) if raw else None


def describe(p: Progress) -> str:
    """One line for ``status``: the summary once finished, else the progress line."""
    return summary(p) if p.finished else line(p, time.time())


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
