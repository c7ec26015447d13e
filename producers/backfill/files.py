"""Lytics profiles from a file: JSON lines, or CSV with a header row, read one at a time.

The format comes from the extension (``.jsonl``/``.ndjson``/``.json``, ``.csv``), else from
the first non-blank byte (``{`` means JSON lines). A position is the number of records
already read, so a resumed run skips exactly those.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from producers.backfill.member import Member, audience_for, keep_fields
from worker.jobs import ExportJob

JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")


class SourceError(Exception):
    """The source cannot be read; the message says where and why."""


def detect_format(path: Path) -> str:
    """``"jsonl"`` or ``"csv"``."""
    suffix = path.suffix.lower()
    if suffix in JSON_SUFFIXES:
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    with path.open("rb") as fh:
        head = fh.read(4096).lstrip()
    return "jsonl" if head.startswith(b"{") else "csv"


def count_records(path: Path) -> int:
    """Non-blank lines (minus the CSV header): cheap, buffered, never the whole file at once."""
    count, last = 0, b"\n"
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            count += block.count(b"\n")
            last = block[-1:]
    count += last != b"\n"
    return max(0, count - (detect_format(path) == "csv"))


class FileSource:
    """Members of a profiles file, from record ``start`` on."""

    def __init__(self, path: Path, job: ExportJob) -> None:
        if not path.is_file():
            raise SourceError(f"cannot read {path}: no such file")
        self.path, self.job = path, job
        self.fields = job.lytics_fields()
        self._total: int | None = None
        self.format = detect_format(path)

    def describe(self) -> str:
        return f"file:{self.path.resolve()}"

    def total(self) -> int | None:
        if self._total is None:  # asked at every checkpoint: count the file once
            self._total = count_records(self.path)
        return self._total

    def members(self, position: dict[str, Any]) -> Iterator[Member]:
        skip = int(position.get("record", 0))
        records = self._jsonl() if self.format == "jsonl" else self._csv()
        for number, profile in enumerate(records, start=1):
            if number > skip:
                yield Member(keep_fields(self.fields, profile), audience_for(self.job, profile),
                             {"record": number})

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
                yield {k: v for k, v in row.items() if k is not None and v not in (None, "")}
