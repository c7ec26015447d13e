"""The jobs file: one job per Klaviyo list, and a bad edit never replaces the good file in force."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.jobs import JobsFileError, UnknownJobError, parse_jobs
from core.jobswatch import JobsWatcher
from core.settings import load_settings
from tests.harness import jobs_toml
from worker import runtime

VIP = {"id": "vip", "audiences": ["vip"], "new_list_name": "VIP"}
NEWS = {"id": "news", "audiences": ["news"], "new_list_name": "News"}
TYPO = "\n[[jobs]]\nid = 'typo'\n"


class TestOneJobPerList:
    def test_two_jobs_with_the_same_list_id_are_refused_naming_both(self) -> None:
        """Two jobs on one list would remove each other's members: the file is refused."""
        text = jobs_toml([{"id": "a", "audiences": ["x"], "list_id": "Xy12Ab"},
                          {"id": "b", "audiences": ["y"], "list_id": "Xy12Ab"}])
        with pytest.raises(JobsFileError) as caught:
            parse_jobs(text)
        message = str(caught.value)
        assert "\n" not in message
        assert "'a'" in message and "'b'" in message and "Xy12Ab" in message

    def test_two_jobs_finding_the_same_list_by_name_are_refused(self) -> None:
        """Without a list_id, the same new_list_name finds the same list."""
        text = jobs_toml([{"id": "a", "audiences": ["x"], "new_list_name": "Shared"},
                          {"id": "b", "audiences": ["y"], "new_list_name": "Shared"}])
        with pytest.raises(JobsFileError, match="'a' and 'b' both export to the list named"):
            parse_jobs(text)

    def test_two_jobs_on_the_default_name_are_refused(self) -> None:
        """Neither a list_id nor a name: both would find or create 'Lytics <date>'."""
        text = jobs_toml([{"id": "a", "audiences": ["x"]}, {"id": "b", "audiences": ["y"]}])
        with pytest.raises(JobsFileError, match="default list name"):
            parse_jobs(text)

    def test_the_same_name_on_two_klaviyo_accounts_is_two_lists(self) -> None:
        """Names and ids are per account: jobs with different keys may share them."""
        text = jobs_toml([{"id": "a", "audiences": ["x"], "new_list_name": "Shared"},
                          {"id": "b", "audiences": ["y"], "new_list_name": "Shared",
                           "api_key_env": "OTHER_KLAVIYO_KEY"}])
        assert [j.id for j in parse_jobs(text).jobs] == ["a", "b"]

    def test_a_list_id_and_a_name_are_different_targets(self) -> None:
        """A job with a list_id never looks a list up by name, so a named job is no clash."""
        text = jobs_toml([{"id": "a", "audiences": ["x"], "list_id": "Xy12Ab",
                           "new_list_name": "Shared"},
                          {"id": "b", "audiences": ["y"], "new_list_name": "Shared"}])
        assert len(parse_jobs(text).jobs) == 2


class TestWatcher:
    @pytest.fixture
    def path(self, tmp_path: Path) -> Path:
        path = tmp_path / "jobs.toml"
        path.write_text(jobs_toml([VIP]))
        return path

    def test_a_bad_edit_keeps_the_last_good_file_and_is_logged_once(
            self, path: Path, caplog: pytest.LogCaptureFixture) -> None:
        """A typo is reported (problem, one log line) however often the file is read."""
        watcher = JobsWatcher(path, lambda jobs: jobs)
        assert [j.id for j in watcher.current().jobs] == ["vip"]
        path.write_text(jobs_toml([VIP]) + TYPO)
        with caplog.at_level(logging.ERROR, logger="core.jobs"):
            seen = [watcher.current() for _ in range(20)]
        assert all([j.id for j in jobs.jobs] == ["vip"] for jobs in seen)
        assert watcher.problem is not None and "'typo'" in watcher.problem
        assert len(caplog.records) == 1
        assert "keeping the last good one" in caplog.records[0].getMessage()

    def test_a_fixed_file_is_in_force_again(self, path: Path) -> None:
        """Once the file loads again its new version is used and the problem is gone."""
        watcher = JobsWatcher(path, lambda jobs: jobs)
        watcher.current()
        path.write_text(jobs_toml([VIP]) + TYPO)
        watcher.current()
        path.write_text(jobs_toml([VIP, NEWS]))
        assert [j.id for j in watcher.current().jobs] == ["vip", "news"]
        assert watcher.problem is None

    def test_a_bad_file_at_start_fails_with_one_line(self, path: Path) -> None:
        """With no good version to keep, the caller gets the file's error."""
        path.write_text(TYPO)
        with pytest.raises(JobsFileError, match="'typo'") as caught:
            JobsWatcher(path, lambda jobs: jobs).current()
        assert "\n" not in str(caught.value)

    def test_a_build_that_refuses_the_file_counts_as_a_bad_file(self, path: Path) -> None:
        """What the caller derives from the file (e.g. tokens) may refuse it too."""
        def build(jobs: object) -> int:
            if "news" in path.read_text():
                raise JobsFileError("job 'news' has no token")
            return 1

        watcher = JobsWatcher(path, build)
        assert watcher.current() == 1
        path.write_text(jobs_toml([VIP, NEWS]))
        assert watcher.current() == 1
        assert watcher.problem == "job 'news' has no token"


class TestRuntimeJob:
    @pytest.fixture
    def path(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
        path = tmp_path / "jobs.toml"
        path.write_text(jobs_toml([VIP, NEWS]))
        monkeypatch.setenv("EXPORT_JOBS_FILE", str(path))
        load_settings.cache_clear()
        yield path
        load_settings.cache_clear()

    def test_a_job_removed_from_a_good_file_is_unknown(self, path: Path) -> None:
        """The file loads and lacks the job: it is gone for good."""
        runtime.job("news")
        path.write_text(jobs_toml([VIP]))
        with pytest.raises(UnknownJobError):
            runtime.job("news")

    def test_a_job_missing_while_the_file_is_bad_is_not_unknown_yet(self, path: Path) -> None:
        """While the file is bad a missing job may be the one being added: a transient error."""
        runtime.job("vip")
        path.write_text(jobs_toml([VIP]) + TYPO)
        assert runtime.job("news").id == "news"  # still in the last good file
        with pytest.raises(JobsFileError, match="not in the jobs file in force"):
            runtime.job("new-one")
        assert runtime.jobs_problem() is not None
