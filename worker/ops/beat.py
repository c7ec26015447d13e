"""RedBeat's scheduler, made to outlive a Redis restart (``beat_scheduler`` points here).

RedBeat 2.4.2 (the newest release) assumes Redis never goes away: ``tick`` extends the
single-beat lock with no error handling, so the first ``ConnectionError`` (or, once Redis is
back, ``LockNotOwnedError`` because the lock expired or was lost with the data) ends
``celery beat``; ``close`` then fails the same way on its way out (sibson/redbeat#285,
#230 are open). This subclass keeps the process alive and the single-beat guarantee intact:

- while Redis is unreachable, a tick sends nothing and tries again after
  ``beat_max_loop_interval``;
- a lock that is no longer ours is dropped; each tick then tries to take it again without
  blocking (another beat may have taken over: this one then waits as a standby);
- on (re)taking the lock the static schedule is installed again, since a Redis restarted
  without its data lost the entries as well as the lock.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from redbeat import schedulers
from redis.exceptions import LockError

logger = logging.getLogger("celery.beat")

REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError)


class RedBeatScheduler(schedulers.RedBeatScheduler):  # type: ignore[misc]
    """RedBeat that keeps running across Redis outages and re-acquires a lost lock."""

    _needs_setup = False

    def setup_schedule(self) -> None:
        try:
            super().setup_schedule()
        except REDIS_DOWN as exc:
            self._needs_setup = True
            logger.warning("beat: Redis unreachable, schedule not installed yet (%s)", exc)
        else:
            self._needs_setup = False

    def tick(self, min: Any = min, **kwargs: Any) -> float:
        try:
            if self.lock_key and not self._hold_lock():
                return float(self.max_interval)
            if self._needs_setup:
                self.setup_schedule()
            return float(super().tick(min=min, **kwargs))
        except REDIS_DOWN as exc:
            logger.warning("beat: Redis unreachable (%s); trying again in %ss",
                           exc, self.max_interval)
            return float(self.max_interval)
        except LockError:
            logger.warning("beat: lost the lock (expired or lost with Redis); taking it again")
            self.lock = None
            return 0.0

    def _hold_lock(self) -> bool:
        """True when this beat holds the lock, taking it now (without waiting) if free."""
        if self.lock is not None:
            return True
        client = schedulers.get_redis(self.app)
        lock = client.lock(self.lock_key, timeout=self.lock_timeout, sleep=self.max_interval)
        lock.lua_extend = client.register_script(schedulers.LUA_EXTEND_TO_SCRIPT)
        if not lock.acquire(blocking=False):
            return False  # another beat holds it: stay a standby
        logger.info("beat: Acquired lock")
        self.lock = lock
        self.setup_schedule()  # the entries may have gone with the lock
        return True

    def close(self) -> None:
        try:
            super().close()
        except (*REDIS_DOWN, LockError) as exc:
            logger.warning("beat: could not release the lock (%s); it expires by itself", exc)
            self.lock = None
            super().close()


SCHEDULER = f"{__name__}:RedBeatScheduler"
