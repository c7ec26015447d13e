"""The jobs file as a long-running process sees it: re-read on change, the last good one kept.

A worker or the webhook receiver reads ``EXPORT_JOBS_FILE`` once at start (a bad file there
fails the process with one line) and again whenever the file changes on disk. A change that
does not load — a typo, half a save, a job without a token — is logged once and reported by
:attr:`JobsWatcher.problem`, and the last good file stays in force: work keeps flowing under
the jobs the operator last got right, nothing is refused or lost because of an edit.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from core.jobs import JobsFile, JobsFileError, load_jobs
from core.settings import ConfigurationError

log = logging.getLogger("core.jobs")
T = TypeVar("T")


@dataclass(frozen=True)
class _Stamp:
    """What tells one version of the file from another without reading it."""

    mtime_ns: int
    size: int
    inode: int


def _stamp(path: Path) -> _Stamp | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return _Stamp(st.st_mtime_ns, st.st_size, st.st_ino)


class JobsWatcher(Generic[T]):
    """A value built from the jobs file (``build``), rebuilt when the file changes.

    ``build`` may refuse a file by raising :class:`ConfigurationError` (the webhook refuses a
    job without a token); that counts as a bad file like a parse error does.
    """

    def __init__(self, path: Path, build: Callable[[JobsFile], T]) -> None:
        self.path = path
        self._build = build
        self._stamp: _Stamp | None = None
        self._seen = False
        self._good: T | None = None
        self._problem: str | None = None

    @property
    def problem(self) -> str | None:
        """Why the file on disk is not in force (None when it is)."""
        return self._problem

    def current(self) -> T:
        """The value for the file on disk, or the last good one when the file is bad.

        Raises :class:`JobsFileError` only when no version of the file has loaded yet.
        """
        stamp = _stamp(self.path)
        if self._seen and stamp == self._stamp and self._good is not None:
            return self._good
        if not self._seen or stamp != self._stamp:
            self._reload(stamp)
        if self._good is None:
            raise JobsFileError(self._problem or f"cannot load jobs file {self.path}")
        return self._good

    def _reload(self, stamp: _Stamp | None) -> None:
        self._stamp, self._seen = stamp, True
        try:
            value = self._build(load_jobs(self.path))
        except ConfigurationError as exc:
            self._problem = str(exc)
            if self._good is not None:  # at start the caller fails; here the last good stays
                log.error(  # noqa: TRY400 - one readable line, no traceback
                    "jobs file %s is not loaded, keeping the last good one: %s", self.path, exc)
            return
        if self._problem is not None and self._good is not None:
            log.warning("jobs file %s loads again; the new version is in force", self.path)
        self._good, self._problem = value, None
