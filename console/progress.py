"""Progress of a long command (``start --wait``, ``dlq replay``), drawn by ``rich``.

On a terminal: a bar with the count, percentage, rate and time left, redrawn in place. When
the output is not a terminal (a pipe, a log file): one plain line every ``every`` seconds and
one at the end, ``what: done/total (pct), rate/s, ETA``, so logs stay readable.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from producers.backfill.progress import Progress as RunProgress


class RateColumn(ProgressColumn):
    """Items per second, as rich measures them."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("-/s" if speed is None else f"{speed:,.0f}/s", style="progress.data.speed")


class Reporter:
    """Counts toward a total (None: unknown), shown as a bar or as periodic lines."""

    def __init__(self, what: str, total: int | None, out: TextIO, *, tty: bool | None = None,
                 every: float = 5.0, unit: str = "") -> None:
        self.what, self.total, self.out, self.every = what, total, out, every
        self.unit = f" {unit}" if unit else ""
        self.tty = out.isatty() if tty is None else tty
        self.done = 0
        self._started = self._shown = time.monotonic()
        self._bar: Progress | None = None
        if self.tty:
            console = Console(file=out, force_terminal=True)
            self._bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TaskProgressColumn(), RateColumn(),
                                 TimeRemainingColumn(), console=console, transient=False)
            self._task = self._bar.add_task(what, total=total)
            self._bar.start()

    def update(self, done: int, total: int | None = None) -> None:
        self.done = done
        if total is not None:
            self.total = total
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=self.total)
            return
        now = time.monotonic()
        if now - self._shown >= self.every:
            self._line(now)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, total=self.total or self.done)
            self._bar.stop()
        else:
            self._line(time.monotonic())

    def _line(self, now: float) -> None:
        self._shown = now
        elapsed = max(now - self._started, 1e-3)
        rate = self.done / elapsed
        total = self.total
        of = f"{self.done:,}/{total:,}" if total else f"{self.done:,}/?"
        pct = f" ({100 * self.done / total:.0f}%)" if total else ""
        eta = ""
        if total and rate > 0 and self.done < total:
            eta = f", ETA {_duration((total - self.done) / rate)}"
        self.out.write(f"{self.what}: {of}{self.unit}{pct}, {rate:,.0f}/s{eta}\n")
        self.out.flush()

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def watch(read: Callable[[], RunProgress], out: TextIO, *, tty: bool | None = None,
          interval: float = 0.5, every: float = 5.0,
          timeout: float | None = None) -> RunProgress:
    """Follow a backfill run until it finishes (or ``timeout``); return the last reading."""
    first = read()
    started = time.monotonic()
    with Reporter(f"backfill {first.run_id}", first.total, out, tty=tty, every=every,
                  unit="profiles") as bar:
        p = first
        while True:
            total = p.total if p.total is not None else (p.dispatched if p.finished else None)
            bar.update(p.done, total)
            if p.finished or (timeout is not None and time.monotonic() - started > timeout):
                return p
            time.sleep(interval)
            p = read()


def _duration(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


__all__ = ["Reporter", "watch"]
