"""Queue and task names, defined once: the tasks, dispatch, beat, dead-letter replay and the
backfill producer all send or declare by these strings.

A task name is what a queued message carries: renaming one orphans every message already
queued under the old name, so these strings never change when code moves.
"""

from __future__ import annotations

# queues: live events and their flushes; a backfill's chunks; periodic upkeep
REALTIME = "realtime"
BACKFILL = "backfill"
MAINTENANCE = "maintenance"
QUEUES = (REALTIME, BACKFILL, MAINTENANCE)

# record tasks (one per event action, see ``core.dispatch``)
AUDIENCE_ENTER = "audience.enter"
AUDIENCE_EXIT = "audience.exit"
AUDIENCE_CHANGE = "audience.change"

# export tasks
FLUSH = "export.flush"
POLL_IMPORT = "export.poll_import"
FLUSH_ATTRIBUTES = "export.flush_attributes"
POLL_IMPORTS = "export.poll_imports"
BOOTSTRAP = "export.bootstrap"
SWEEP = "export.sweep"
BOOTSTRAP_ALL = "export.bootstrap_all"
CONFIRM = "export.confirm"  # who of a double opt-in list's awaiting people confirmed
CONFIRM_ALL = "export.confirm_all"
AUDIT = "export.audit"  # a scheduled full audit of one job's list (no repair)
AUDIT_ALL = "export.audit_all"  # beat: a full audit for every job whose schedule says so

# a backfill's chord: one chunk task per stored chunk, a segment task as the body
BACKFILL_CHUNK = "backfill.chunk"
BACKFILL_SEGMENT = "backfill.segment"

# operations
HEARTBEAT = "ops.heartbeat"
HEALTH = "ops.health"
OPTOUTS_REFRESH = "ops.optouts_refresh"

TASKS = (
    AUDIENCE_ENTER, AUDIENCE_EXIT, AUDIENCE_CHANGE,
    FLUSH, POLL_IMPORT, FLUSH_ATTRIBUTES, POLL_IMPORTS, BOOTSTRAP, SWEEP, BOOTSTRAP_ALL, CONFIRM,
    CONFIRM_ALL,
    BACKFILL_CHUNK, BACKFILL_SEGMENT,
    HEARTBEAT, HEALTH, OPTOUTS_REFRESH,
)
