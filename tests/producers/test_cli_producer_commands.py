"""Specs for ``klaviyo-export jobs``, ``enqueue`` and ``webhook``: readable output, no traceback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import redis
from lytics_samples import TS_NS, batch, body, cloud_event, queue_length, queued_events

from console import cli
from core.settings import load_settings

JOBS = """
[[jobs]]
id = "vip"
label = "VIP buyers"
audiences = ["vip_buyers", "churn_risk"]
list_id = "Xy12Ab"
force_add = true
field_map = { first_name = "first_name" }

[[jobs]]
id = "news"
audiences = ["newsletter"]
new_list_name = "News (Lytics)"
backfill = false
api_key_env = "NEWS_KLAVIYO_KEY"
"""


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, redis_url: str) -> Iterator[Path]:
    """A jobs file, the private Redis and a fresh settings cache; only our three commands."""
    (tmp_path / "jobs.toml").write_text(JOBS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EXPORT_JOBS_FILE", str(tmp_path / "jobs.toml"))
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("KEY_PREFIX", "clitest")
    monkeypatch.setattr(cli, "COMMANDS", ("jobs", "enqueue", "webhook"))
    load_settings.cache_clear()
    yield tmp_path
    load_settings.cache_clear()


def write_lines(path: Path, *bodies: object) -> str:
    path.write_bytes(b"\n".join(orjson.dumps(b) for b in bodies) + b"\n\n")
    return str(path)


class TestJobs:
    def test_list_shows_one_row_per_job(self, env: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
        """The table names audiences, list target, mode and backfill for every job."""
        assert cli.main(["jobs", "list"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].split() == ["ID", "LABEL", "AUDIENCES", "LIST", "MODE", "BACKFILL"]
        assert lines[1].split("  ")[0] == "vip"
        assert "vip_buyers, churn_risk" in lines[1]
        assert "Xy12Ab" in lines[1] and "force-add" in lines[1] and lines[1].endswith("yes")
        assert "new: News (Lytics)" in lines[2] and "subscribe" in lines[2]
        assert lines[2].endswith("no")

    def test_validate_ok(self, env: Path, monkeypatch: pytest.MonkeyPatch,
                         capsys: pytest.CaptureFixture[str]) -> None:
        """With every key present and private, validate says ok and exits 0."""
        monkeypatch.setenv("KLAVIYO_API_KEY", "pk_test_one")
        monkeypatch.setenv("NEWS_KLAVIYO_KEY", "pk_test_two")
        assert cli.main(["jobs", "validate"]) == 0
        assert capsys.readouterr().out.strip() == "ok: 2 jobs"

    def test_validate_lists_every_problem(self, env: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
        """A missing key and a public key are both reported, and the exit code is 1."""
        monkeypatch.setenv("NEWS_KLAVIYO_KEY", "public_key")
        assert cli.main(["jobs", "validate"]) == 1
        problems = capsys.readouterr().err.splitlines()
        assert len(problems) == 2
        assert "KLAVIYO_API_KEY is not set" in problems[0]
        assert "not a Klaviyo private key" in problems[1]

    def test_validate_reports_a_broken_file(self, env: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
        """A jobs file that does not load is one problem line, exit 1."""
        (env / "jobs.toml").write_text("[[jobs]]\nid = 'x'\n")
        assert cli.main(["jobs", "validate"]) == 1
        assert capsys.readouterr().err.startswith("problem: job 'x': audiences")

    def test_list_without_a_jobs_file_is_one_line(self, env: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
        """A missing file is a user mistake: one line on stderr, exit 2."""
        (env / "jobs.toml").unlink()
        assert cli.main(["jobs", "list"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("klaviyo-export: cannot read jobs file") and err.count("\n") == 1


class TestEnqueue:
    def test_queues_every_line(self, env: Path, redis_url: str,
                               capsys: pytest.CaptureFixture[str]) -> None:
        """Single, batched and CloudEvents lines are parsed like the receiver does and queued."""
        path = write_lines(env / "bodies.jsonl", body(), batch(3, start=1), cloud_event())
        assert cli.main(["enqueue", "vip", "--from-file", path]) == 0
        out = capsys.readouterr().out
        assert out.startswith("enqueued 5 events for job 'vip' in 1 messages")
        events = queued_events(redis.Redis.from_url(redis_url), "clitest")
        assert len(events) == 5
        assert all(isinstance(e.pop("received_ns"), int) for e in events)  # enqueue time
        assert events[0] == {"audience": "vip_buyers", "action": "enter", "ts_ns": TS_NS,
                             "profile": {"email": "ann@example.com", "_uid": "a1b2c3"}}

    def test_a_bad_line_queues_nothing(self, env: Path, redis_url: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
        """Line 2's problem is named with its number, and line 1 is not queued either."""
        bad = body()
        bad["data"]["segment_events"][0]["event"] = "teleport"
        path = write_lines(env / "bodies.jsonl", body(), bad)
        assert cli.main(["enqueue", "vip", "--from-file", path]) == 2
        err = capsys.readouterr().err
        assert err == (f"klaviyo-export: {path}:2: body.data.segment_events[0].event: "
                       "unknown event 'teleport' (enter, exit or change)\n")
        assert queue_length(redis.Redis.from_url(redis_url), "clitest") == 0

    @pytest.mark.parametrize(("argv", "message"), [
        (["enqueue", "nobody", "--from-file", "x.jsonl"],
         "no export job 'nobody' (jobs: vip, news)"),
        (["enqueue", "vip", "--from-file", "missing.jsonl"], "cannot read missing.jsonl"),
    ])
    def test_user_mistakes_are_one_line(self, env: Path, argv: list[str], message: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
        """Unknown job or unreadable file: one readable line, exit 2."""
        assert cli.main(argv) == 2
        assert capsys.readouterr().err.startswith(f"klaviyo-export: {message}")

    def test_unreachable_redis_is_one_line(self, env: Path, monkeypatch: pytest.MonkeyPatch,
                                           free_tcp_port: int,
                                           capsys: pytest.CaptureFixture[str]) -> None:
        """A broker that does not answer is reported without a traceback."""
        monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_tcp_port}/0")
        load_settings.cache_clear()
        path = write_lines(env / "bodies.jsonl", body())
        assert cli.main(["enqueue", "vip", "--from-file", path]) == 2
        assert capsys.readouterr().err.startswith("klaviyo-export: cannot reach Redis")


class TestWebhookCommand:
    def test_refuses_to_start_without_a_token(self, env: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
        """No WEBHOOK_TOKEN and no job token: a configuration error, not an open receiver."""
        assert cli.main(["webhook", "--port", "8999"]) == 2
        assert "no webhook token for job(s) vip, news" in capsys.readouterr().err

    @pytest.mark.parametrize("argv", [["jobs"], ["jobs", "list"], ["jobs", "validate"],
                                      ["enqueue"], ["webhook"]])
    def test_every_command_has_help(self, env: Path, argv: list[str],
                                    capsys: pytest.CaptureFixture[str]) -> None:
        """``--help`` prints a usage line and exits 0."""
        with pytest.raises(SystemExit) as done:
            cli.main([*argv, "--help"])
        assert done.value.code == 0
        assert capsys.readouterr().out.startswith("usage: klaviyo-export")
