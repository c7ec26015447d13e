"""Lytics profiles from a file: JSON lines, or CSV with a header row, read one at a time.

The format comes from the extension (``.jsonl``/``.ndjson``/``.json``, ``.csv``), else from
the first non-blank byte (``{`` means JSON lines, other text CSV); a CSV header must name the
job's email field. A position is the number of records already read, so a resumed run skips
exactly those.

Audiences: a row's ``segments`` (a list, or a comma/semicolon/pipe list in a CSV cell) places
it in each selected audience it names; naming none (an empty cell included) leaves the row
out as ``not_in_audience``. A row without ``segments`` is placed in all the job's audiences.

Time: every row is an enter at the file's snapshot time: ``as_of`` when given, else the
file's modification time. With ``timestamp_field``, a row holding that field (RFC 3339, or
seconds or milliseconds since the epoch) uses its own time; an unusable one leaves the row
out as ``invalid_timestamp``.
"""

from __future__ import annotations

import codecs
import csv
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from core.chunks import INVALID_TIMESTAMP, NOT_IN_AUDIENCE
from core.jobs import ExportJob
from core.redact import show
from producers.backfill.member import Member, audiences_for, keep_fields
from producers.backfill.snapshot import row_timestamp

JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")


class SourceError(Exception):
    """The source cannot be read; the message says where and why."""


def detect_format(path: Path) -> str:
    """``"jsonl"`` or ``"csv"``; SourceError when the file is unreadable or not text."""
    suffix = path.suffix.lower()
    try:
        with path.open("rb") as fh:
            head = fh.read(4096)
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from None
    if suffix in JSON_SUFFIXES:
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    text = head.lstrip()
    if text.startswith(b"{"):
        return "jsonl"
    if not text or b"\0" in text or not _utf8(text):
        raise SourceError(f"cannot tell the format of {path}: neither JSON lines nor CSV "
                          "(name it .jsonl or .csv)")
    return "csv"


def _utf8(head: bytes) -> bool:
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return True


def count_records(path: Path, fmt: str | None = None) -> int:
    """Non-blank lines (minus the CSV header): cheap, buffered, never the whole file at once."""
    count, last = 0, b"\n"
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            count += block.count(b"\n")
            last = block[-1:]
    count += last != b"\n"
    return max(0, count - ((fmt or detect_format(path)) == "csv"))


class FileSource:
    """Members of a profiles file, from record ``start`` on; every input checked at once."""

    def __init__(self, path: Path, job: ExportJob, *, as_of_ns: int | None = None,
                 timestamp_field: str | None = None, now_ns: int | None = None) -> None:
        if not path.is_file():
            raise SourceError(f"cannot read {path}: no such file")
        self.path, self.job = path, job
        self.fields = job.lytics_fields()
        self.as_of_ns, self.timestamp_field = as_of_ns, timestamp_field
        self.now_ns = time.time_ns() if now_ns is None else now_ns
        self._total: int | None = None
        self.format = detect_format(path)
        if self.format == "csv":
            self._check_header()

    def _check_header(self) -> None:
        try:
            with self.path.open(newline="", encoding="utf-8-sig") as fh:
                header = next(csv.reader(fh), [])
        except (OSError, UnicodeDecodeError) as exc:
            raise SourceError(f"cannot read {self.path} as CSV: {exc}") from None
        if self.job.email_field not in header:
            found = show(", ".join(header[:6]))
            raise SourceError(f"{self.path}: the CSV header row has no "
                              f"{self.job.email_field!r} column (first row: {found})")

    def describe(self) -> str:
        stamp = f" timestamp:{self.timestamp_field}" if self.timestamp_field else ""
        return f"file:{self.path.resolve()}{stamp}"

    def snapshot_ns(self) -> int:
        """``as_of``, else when the file was last written (never later than now)."""
        if self.as_of_ns is not None:
            return self.as_of_ns
        return min(self.path.stat().st_mtime_ns, self.now_ns)

    def total(self) -> int | None:
        if self._total is None:  # asked at every checkpoint: count the file once
            self._total = count_records(self.path, self.format)
        return self._total

    def members(self, position: dict[str, Any]) -> Iterator[Member]:
        skip = int(position.get("record", 0))
        records = self._jsonl() if self.format == "jsonl" else self._csv()
        for number, profile in enumerate(records, start=1):
            if number > skip:
                yield self._member(profile, {"record": number})

    def _member(self, profile: dict[str, Any], position: dict[str, Any]) -> Member:
        audiences = audiences_for(self.job, profile)
        if not audiences:
            return Member({}, (), position, omitted=NOT_IN_AUDIENCE)
        ts_ns = None
        stamp = profile.get(self.timestamp_field) if self.timestamp_field else None
        if stamp is not None:
            try:
                ts_ns = row_timestamp(stamp, self.now_ns)
            except ValueError:
                return Member({}, (), position, omitted=INVALID_TIMESTAMP)
        return Member(keep_fields(self.fields, profile), audiences, position, ts_ns)

    def _jsonl(self) -> Iterator[dict[str, Any]]:
        with self.path.open("rb") as fh:
            for line_no, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    value = orjson.loads(line)
                except orjson.JSONDecodeError:
                    value = None
                yield value if isinstance(value, dict) else {"_invalid_line": line_no}

    def _csv(self) -> Iterator[dict[str, Any]]:
        with self.path.open(newline="", encoding="utf-8-sig") as fh:
            for row in csv.DictReader(fh):
                # an empty segments cell is kept: that row is in no segment, not unknown
                yield {k: v for k, v in row.items()
                       if k is not None and v is not None and (v != "" or k == "segments")}
