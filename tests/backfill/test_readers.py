"""Backfill sources without a stack: file formats, scan paging and backoff, resuming positions."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import responses
from responses import matchers

from core.jobs import ExportJob
from producers.backfill.files import FileSource, SourceError, count_records, detect_format
from producers.backfill.scan import ScanSource
from producers.backfill.snapshot import SnapshotError, parse_as_of

JOB = ExportJob(id="vip", audiences=("vip", "buyers"), field_map={"first_name": "first_name"})
BASE = "http://lytics.test"
FIELDS = "email,first_name,_uid,segments"
SCAN = f"{BASE}/api/segment/vip/scan"


def _scan(sleeps: list[float] | None = None, attempts: int = 4) -> ScanSource:
    waits = sleeps if sleeps is not None else []
    return ScanSource(JOB.model_copy(update={"audiences": ("vip",)}), BASE, "tok",
                      max_attempts=attempts, sleep=waits.append)


class TestFiles:
    def test_jsonl_keeps_the_jobs_fields_and_its_selected_audiences(self, tmp_path: Path) -> None:
        """A JSON-lines profile keeps the email and mapped fields, and the selected audiences
        its segments name; an unreadable line is still one (email-less) person."""
        path = tmp_path / "p.jsonl"
        path.write_text(json.dumps({"email": "a@x.io", "first_name": "A", "ltv": 3,
                                    "segments": ["other", "buyers"]}) + "\n\n" + "{broken\n")
        got = list(FileSource(path, JOB).members({}))
        assert [(m.profile, m.audiences) for m in got] == [
            ({"email": "a@x.io", "first_name": "A"}, ("buyers",)), ({}, ("vip", "buyers"))]

    def test_csv_with_header_row_and_segments_column(self, tmp_path: Path) -> None:
        """A CSV row becomes a profile; empty cells are absent, except an empty segments cell,
        which places the row in no audience; segments may be a list in a cell."""
        path = tmp_path / "p.csv"
        path.write_text("email,first_name,segments\nb@x.io,,\"x;buyers\"\nc@x.io,C,\n")
        got = list(FileSource(path, JOB).members({}))
        assert [(m.profile, m.audiences, m.omitted) for m in got] == [
            ({"email": "b@x.io"}, ("buyers",), None), ({}, (), "not_in_audience")]

    def test_format_from_extension_or_content_and_cheap_count(self, tmp_path: Path) -> None:
        """Without a known extension the first byte decides; the count skips the CSV header."""
        js, cs = tmp_path / "a.txt", tmp_path / "b.dat"
        js.write_text('{"email": "a@x.io"}\n{"email": "b@x.io"}')
        cs.write_text("email\na@x.io\nb@x.io\n")
        assert (detect_format(js), detect_format(cs)) == ("jsonl", "csv")
        assert (count_records(js), count_records(cs)) == (2, 2)

    def test_resuming_skips_the_records_already_read(self, tmp_path: Path) -> None:
        """A position of N records resumes with record N + 1."""
        path = tmp_path / "p.jsonl"
        path.write_text("".join(json.dumps({"email": f"u{i}@x.io"}) + "\n" for i in range(5)))
        got = list(FileSource(path, JOB).members({"record": 3}))
        assert [m.profile["email"] for m in got] == ["u3@x.io", "u4@x.io"]
        assert got[-1].position == {"record": 5}

    def test_a_missing_file_is_a_source_error(self, tmp_path: Path) -> None:
        """A path that is not a file is refused before anything starts."""
        with pytest.raises(SourceError):
            FileSource(tmp_path / "nope.jsonl", JOB)

    def test_a_file_whose_format_cannot_be_told_is_refused_at_once(self, tmp_path: Path) -> None:
        """Binary or empty content without a known extension, and a CSV header without the
        job's email field, are refused when the source is opened, before any list exists."""
        binary, empty, headless = tmp_path / "a.bin", tmp_path / "b.dat", tmp_path / "c.csv"
        binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
        empty.write_text("")
        headless.write_text("ann@x.io,Ann\nbob@x.io,Bob\n")
        for path, why in ((binary, "cannot tell the format"), (empty, "cannot tell the format"),
                          (headless, "no 'email' column")):
            with pytest.raises(SourceError, match=why):
                FileSource(path, JOB)


class TestFileAudiences:
    def _members(self, tmp_path: Path, *rows: dict[str, object]) -> list[tuple[object, ...]]:
        path = tmp_path / "p.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return [(m.profile.get("email"), m.audiences, m.omitted)
                for m in FileSource(path, JOB).members({})]

    def test_a_row_is_in_every_selected_audience_it_names(self, tmp_path: Path) -> None:
        """Both selected segments are kept, once each, in the row's order; others are not."""
        got = self._members(tmp_path, {"email": "both@x.io",
                                       "segments": ["buyers", "other", "vip", "buyers"]})
        assert got == [("both@x.io", ("buyers", "vip"), None)]

    def test_a_row_naming_only_other_segments_is_left_out(self, tmp_path: Path) -> None:
        """Other segments only, or an empty list: not_in_audience, and nothing of it is sent."""
        got = self._members(tmp_path, {"email": "o@x.io", "segments": ["other"]},
                            {"email": "e@x.io", "segments": []})
        assert got == [(None, (), "not_in_audience")] * 2

    def test_a_row_without_segments_is_in_all_the_jobs_audiences(self, tmp_path: Path) -> None:
        """No segments field (or null): the row is placed in every audience of the job."""
        got = self._members(tmp_path, {"email": "n@x.io"}, {"email": "z@x.io", "segments": None})
        assert got == [("n@x.io", ("vip", "buyers"), None), ("z@x.io", ("vip", "buyers"), None)]


class TestFileSnapshot:
    def test_the_snapshot_is_as_of_else_the_files_modification_time(self, tmp_path: Path) -> None:
        """--as-of wins; without it the file's mtime, never later than now."""
        path = tmp_path / "p.jsonl"
        path.write_text('{"email": "a@x.io"}\n')
        hour_ago = time.time_ns() - 3600 * 10**9
        os.utime(path, ns=(hour_ago, hour_ago))
        assert FileSource(path, JOB).snapshot_ns() == hour_ago
        assert FileSource(path, JOB, as_of_ns=123).snapshot_ns() == 123
        ahead = time.time_ns() + 86400 * 10**9
        os.utime(path, ns=(ahead, ahead))
        now = time.time_ns()
        assert FileSource(path, JOB, now_ns=now).snapshot_ns() == now

    def test_a_rows_own_timestamp_wins_and_an_unusable_one_is_left_out(
            self, tmp_path: Path) -> None:
        """RFC 3339, epoch seconds or milliseconds (a CSV cell is text); no value: the run's
        time (None); garbage or a time in the future: invalid_timestamp, nothing sent."""
        path = tmp_path / "p.csv"
        path.write_text("email,seen,segments\n"
                        "a@x.io,2024-05-01T12:00:00.5Z,vip\n"
                        "b@x.io,1714564800,vip\n"
                        "c@x.io,1714564800250,vip\n"
                        "d@x.io,,vip\n"
                        "e@x.io,yesterday,vip\n"
                        "f@x.io,2999-01-01T00:00:00Z,vip\n")
        got = [(m.profile.get("email"), m.ts_ns, m.omitted)
               for m in FileSource(path, JOB, timestamp_field="seen").members({})]
        assert got == [("a@x.io", 1714564800_500_000_000, None),
                       ("b@x.io", 1714564800_000_000_000, None),
                       ("c@x.io", 1714564800_250_000_000, None), ("d@x.io", None, None),
                       (None, None, "invalid_timestamp"), (None, None, "invalid_timestamp")]

    def test_as_of_must_be_rfc3339_and_not_in_the_future(self) -> None:
        """A small skew ahead of our clock is allowed; more, or not RFC 3339, is refused."""
        now = 1_714_564_800 * 10**9
        assert parse_as_of("2024-05-01T12:00:00Z", now) == now
        assert parse_as_of("2024-05-01T12:04:00Z", now) == now + 240 * 10**9
        with pytest.raises(SnapshotError, match="in the future"):
            parse_as_of("2024-05-01T12:00:00Z", now - 300 * 10**9 - 1)  # MAX_EVENT_SKEW_SECONDS
        with pytest.raises(SnapshotError, match="RFC 3339"):
            parse_as_of("May 1st", now)


def _page(emails: list[str], nxt: str | None, status: object = 200) -> dict[str, object]:
    body: dict[str, object] = {"status": status, "message": "success", "total": 3,
                               "data": [{"email": e} for e in emails]}
    if nxt is not None:
        body["_next"] = nxt
    return body


class TestScan:
    @responses.activate
    def test_pages_follow_next_until_it_is_empty(self) -> None:
        """Each page passes the previous _next as start, the bare token and only needed fields."""
        auth = matchers.header_matcher({"Authorization": "tok"})
        first = matchers.query_param_matcher({"limit": "100", "fields": FIELDS})
        second = matchers.query_param_matcher({"limit": "100", "fields": FIELDS, "start": "p2"})
        responses.get(SCAN, json=_page(["a@x.io", "b@x.io"], "p2"), match=[auth, first])
        responses.get(SCAN, json=_page(["c@x.io"], ""), match=[auth, second])
        source = _scan()
        got = list(source.members({}))
        assert [m.profile["email"] for m in got] == ["a@x.io", "b@x.io", "c@x.io"]
        assert got[1].position == {"audience": 0, "start": "", "skip": 2}
        assert source.total() == 3

    @responses.activate
    def test_each_member_is_in_the_scanned_audience_as_of_the_scans_start(self) -> None:
        """The snapshot time is read from the clock before the first page and then kept."""
        happened: list[str] = []

        def clock() -> int:
            happened.append("clock")
            return 42

        def page(_request: object) -> tuple[int, dict[str, str], str]:
            happened.append("page")
            return 200, {}, json.dumps(_page(["a@x.io"], ""))

        responses.add_callback(responses.GET, SCAN, callback=page)
        source = ScanSource(JOB.model_copy(update={"audiences": ("vip",)}), BASE, "tok",
                            clock=clock)
        got = list(source.members({"audience": 0}))
        assert happened[:2] == ["clock", "page"] and source.snapshot_ns() == 42
        assert [(m.profile, m.audiences) for m in got] == [({"email": "a@x.io"}, ("vip",))]

    @responses.activate
    def test_a_missing_next_ends_the_scan_and_string_status_is_accepted(self) -> None:
        """No _next means the last page; a status sent as a string still reads as success."""
        responses.get(SCAN, json=_page(["a@x.io"], None, status="200"))
        assert [m.profile["email"] for m in _scan().members({})] == ["a@x.io"]

    @responses.activate
    def test_429_and_5xx_are_retried_with_backoff(self) -> None:
        """A 429 then a 503 are waited out; the page then arrives."""
        responses.get(SCAN, status=429, json={"status": 429, "message": "slow down"})
        responses.get(SCAN, status=503, body="unavailable")
        responses.get(SCAN, json=_page(["a@x.io"], ""))
        sleeps: list[float] = []
        assert len(list(_scan(sleeps).members({}))) == 1
        assert len(sleeps) == 2 and all(0 <= s <= 30 for s in sleeps)

    @responses.activate
    def test_retries_are_bounded_and_other_errors_stop_at_once(self) -> None:
        """Endless 500s give up after the attempts; a 401 stops without retrying."""
        responses.get(SCAN, status=500, json={"status": 500, "message": "boom"})
        with pytest.raises(SourceError, match="kept failing"):
            list(_scan(attempts=3).members({}))
        assert len(responses.calls) == 3
        refused = {"status": 401, "message": "bad token"}
        responses.replace(responses.GET, SCAN, status=401, json=refused)
        with pytest.raises(SourceError, match="401"):
            list(_scan().members({}))
        assert len(responses.calls) == 4

    @responses.activate
    def test_resuming_rereads_the_page_and_skips_what_was_read(self) -> None:
        """A position inside a page re-reads that page from its start token and skips the rest."""
        resume = matchers.query_param_matcher({"limit": "100", "fields": FIELDS, "start": "p2"})
        responses.get(SCAN, json=_page(["c@x.io", "d@x.io"], ""), match=[resume])
        got = list(_scan().members({"audience": 0, "start": "p2", "skip": 1}))
        assert [m.profile["email"] for m in got] == ["d@x.io"]
