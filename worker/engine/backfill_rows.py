"""The marks a worker makes of a stored backfill chunk (its format: ``core.chunks``).

One enter mark per selected audience of each row, each person counted once on the job.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from core.chunks import NOT_IN_AUDIENCE, Chunk, ChunkRow
from core.jobs import ExportJob
from worker.engine.record import Marked, mark_events
from worker.state.desired import Mark


@dataclass
class ChunkMarks:
    """What a chunk records: its marks and the people behind them (``marked``, counted once
    each on the job), and the run's own counts of people left out, by reason."""

    marked: Marked = field(default_factory=Marked)
    omitted: Counter[str] = field(default_factory=Counter)  # the run's counts, by reason

    @property
    def marks(self) -> list[Mark]:
        return self.marked.marks

    @property
    def exported(self) -> int:
        return len(dict.fromkeys(m.email for m in self.marks))


def chunk_marks(job: ExportJob, chunk: Chunk) -> ChunkMarks:
    """One enter mark per selected audience of each row; each person counted once.

    Rows are grouped by their audiences, so a profile is mapped once (``mark_events`` on the
    row itself) and its marks for the other audiences are copies of the first.
    """
    out = ChunkMarks(omitted=Counter(chunk.omitted))
    groups: dict[tuple[str, ...], list[ChunkRow]] = {}
    for row in chunk.rows:
        audiences, kept = row.audiences, row
        if not all(job.selects(a) for a in audiences):  # the jobs file changed since dispatch
            audiences = tuple(dict.fromkeys(a for a in audiences if job.selects(a)))
            if not audiences:  # nobody is exported outside the job's audiences
                out.omitted[NOT_IN_AUDIENCE] += 1
                continue
            kept = row.model_copy(update={"audience": audiences[0], "also": audiences[1:]})
        groups.setdefault(audiences, []).append(kept)
    for audiences, rows in groups.items():
        marked = mark_events(job, rows)
        marks = marked.marks
        out.marked.marks += marks + [m._replace(audience=a) for m in marks for a in audiences[1:]]
        for mine, theirs in ((out.marked.omitted, marked.omitted),
                             (out.marked.dropped, marked.dropped),
                             (out.marked.clamped, marked.clamped)):
            for reason, people in theirs.items():
                mine[reason] |= people
    out.omitted.update({reason: len(people) for reason, people in out.marked.omitted.items()})
    return out
