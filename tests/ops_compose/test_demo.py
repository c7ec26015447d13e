"""``make run`` (producers/demo/): its pure helpers, the shipped examples, and one full run."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from console.demo import audience, backends, processes
from console.demo import summary as report
from core.jobs import load_jobs
from core.settings import Settings
from producers.lytics import parse_body
from worker.engine.normalize import normalize_email

ROOT = Path(__file__).resolve().parents[2]
JOB = load_jobs(audience.JOBS_FILE).get(audience.JOB_ID)


# --- the shipped examples -------------------------------------------------------------------


def test_the_demo_job_has_two_audiences_and_maps_three_fields() -> None:
    assert len(JOB.audiences) == 2
    assert JOB.new_list_name == "Lytics demo" and JOB.list_id is None
    targets = set(JOB.field_map.values())
    assert "first_name" in targets and "location.city" in targets
    assert any(t.startswith("properties.") for t in targets)


def test_the_sample_audience_has_overlaps_and_bad_emails() -> None:
    profiles = audience.read_profiles(audience.SAMPLE_AUDIENCE)
    assert 1900 <= len(profiles) <= 2100
    both = [p for p in profiles if set(p["segments"]) == set(JOB.audiences)]
    assert len(both) > 100
    unusable = [p for p in profiles if normalize_email(p.get("email")) is None]
    kinds = {"missing" if "email" not in p else "invalid" for p in unusable}
    assert kinds == {"missing", "invalid"}
    assert 0 < len(unusable) < 20


def test_every_sample_webhook_body_parses() -> None:
    for path in sorted((audience.EXAMPLES / "webhooks").glob("*.json")):
        parsed = parse_body(json.loads(path.read_text(encoding="utf-8")), JOB)
        assert parsed.events and parsed.ignored == 0, path.name


# --- pure helpers ---------------------------------------------------------------------------


def test_choose_redis_uses_redis_url_only_when_it_answers() -> None:
    url = "redis://10.0.0.5:6379/0"
    assert processes.choose_redis({"REDIS_URL": url}, answers=lambda u: True) == url
    assert processes.choose_redis({"REDIS_URL": url}, answers=lambda u: False) is None
    assert processes.choose_redis({}, answers=lambda u: True) is None
    assert processes.choose_redis({"REDIS_URL": "  "}, answers=lambda u: True) is None


def test_redis_answers_is_false_for_nothing_listening() -> None:
    nobody = f"redis://127.0.0.1:{processes.free_port()}/0"
    assert processes.redis_answers(nobody, timeout=0.5) is False
    assert processes.redis_answers("not a url") is False


def test_redis_answers_true_for_a_live_server(redis_url: str) -> None:
    assert processes.redis_answers(redis_url)


def test_private_redis_is_durable_loopback_only(tmp_path: Path) -> None:
    argv = processes.redis_server_argv("/usr/bin/redis-server", 7001, tmp_path)
    joined = " ".join(argv)
    for part in ("--port 7001", "--bind 127.0.0.1", f"--dir {tmp_path}", "--appendonly yes",
                 "--maxmemory-policy noeviction"):
        assert part in joined


def test_each_run_has_a_valid_prefix_of_its_own() -> None:
    a, b = audience.demo_prefix(1_800_000_000.0), audience.demo_prefix(1_800_000_000.5)
    assert a != b and a.startswith("demo")
    Settings(key_prefix=a)  # the settings' pattern accepts it


def test_free_port_prefers_the_given_port_when_free() -> None:
    port = processes.free_port()
    assert processes.free_port(port) == port
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        assert processes.free_port(taken) != taken


def test_enter_bodies_are_lytics_payloads_for_each_audience() -> None:
    profile = {"email": "a@example.com", "first_name": "A", "city": "Oslo",
               "segments": list(JOB.audiences)}
    body = audience.enter_body(profile, audience.rfc3339(1_800_000_000))
    parsed = parse_body(body, JOB)
    assert [e.audience for e in parsed.events] == list(JOB.audiences)
    assert parsed.events[0].profile == {"email": "a@example.com", "first_name": "A", "city": "Oslo"}
    assert parsed.events[0].ts_ns == 1_800_000_000 * 10**9


def test_restamp_moves_every_timestamp_and_leaves_the_input_alone() -> None:
    live = json.loads(audience.LIVE_EVENTS.read_text(encoding="utf-8"))
    stamp = audience.rfc3339(1_900_000_000.25)
    out = audience.restamp(live, stamp)
    assert out != live and live == json.loads(audience.LIVE_EVENTS.read_text(encoding="utf-8"))
    for event in parse_body(out, JOB).events:
        assert event.ts_ns == 1_900_000_000_250_000_000


def test_expected_members_applies_the_live_events_in_order() -> None:
    profiles = audience.read_profiles(audience.SAMPLE_AUDIENCE)
    live = json.loads(audience.LIVE_EVENTS.read_text(encoding="utf-8"))
    before = audience.expected_members(profiles, [], JOB.audiences)
    after = audience.expected_members(profiles, live, JOB.audiences)
    assert len(before) == 1992  # 2,000 profiles, 8 without a usable email
    assert "mixed.case@example.com" in before  # normalised like the engine does
    assert after - before == {"new.ann@example.com", "new.bo@example.com", "new.chen@example.com"}
    assert before - after == {"user00000@example.com", "user00012@example.com"}
    assert "user00017@example.com" in after  # left one of its two audiences only


def test_expected_members_ignores_other_audiences() -> None:
    profiles = [{"email": "a@example.com", "segments": ["elsewhere"]}]
    assert audience.expected_members(profiles, [], JOB.audiences) == set()


def test_split_by_segment_writes_one_file_per_audience() -> None:
    rows = [{"email": "a@x.io", "segments": ["s1", "s2"]}, {"email": "b@x.io", "segments": ["s2"]}]
    split = audience.split_by_segment(rows)
    assert {k: [r["email"] for r in v] for k, v in split.items()} == {
        "s1": ["a@x.io"], "s2": ["a@x.io", "b@x.io"]}


def test_format_omitted() -> None:
    assert report.format_omitted({}) == "0"
    assert report.format_omitted({"no_email": 3, "invalid_email": 5}) == \
        "8 (invalid_email 5, no_email 3)"


def summary(**changes: object) -> report.Summary:
    fields: dict[str, object] = dict(
        list_id="Xy12Ab", list_name="Lytics demo", members=1993, expected=1993, matched=True,
        status={"status": "ready", "added": 1995, "removed": 2, "failed": 0, "dead_lettered": 0,
                "pending": 0, "omitted": {"invalid_email": 5, "no_email": 3}, "reason": "",
                "last_error": None},
        flower_url="http://127.0.0.1:5555", webhook_url="http://127.0.0.1:8000/webhooks/lytics/demo",
        klaviyo="sandbox http://127.0.0.1:8787", seconds=21.4, backfill="file", prefix="demo1")
    fields.update(changes)
    return report.Summary(**fields)  # type: ignore[arg-type]


def test_summary_names_every_number() -> None:
    text = "\n".join(report.format_summary(summary()))
    assert text.startswith("Demo finished in 21 s")
    for line in ('list:      Xy12Ab "Lytics demo" (ready)', "members:   1,993 (expected 1,993)",
                 "added:     1,995", "removed:   2", "omitted:   8 (invalid_email 5, no_email 3)",
                 "Flower:    http://127.0.0.1:5555"):
        assert line in text
    assert "token" not in text.lower().replace("<webhook_token>", "")


def test_summary_without_flower_or_membership_says_so() -> None:
    text = "\n".join(report.format_summary(summary(
        flower_url=None, members=None, expected=None, matched=False,
        status={"status": "auth_failed", "reason": "Klaviyo refused the key (401)",
                "omitted": {}})))
    assert "did NOT converge" in text
    assert "members:   unknown" in text
    assert "Flower:    not running" in text
    assert "reason:    Klaviyo refused the key (401)" in text


def test_run_once() -> None:
    assert report.run_once({"RUN_ONCE": "1"}) and report.run_once({"RUN_ONCE": "true"})
    assert not report.run_once({}) and not report.run_once({"RUN_ONCE": "0"})


def test_wait_for_is_bounded() -> None:
    assert processes.wait_for(lambda: 5, 1, "five") == 5
    started = time.monotonic()
    with pytest.raises(processes.DemoError, match="waiting for never"):
        processes.wait_for(lambda: False, 0.3, "never", interval=0.05)
    assert time.monotonic() - started < 2


def test_stopping_kills_the_whole_process_group(tmp_path: Path) -> None:
    """A child that ignores SIGTERM, with a grandchild of its own: both are gone after stop()."""
    procs = processes.Processes(tmp_path)
    script = ("import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
              "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
              "print(p.pid, flush=True); time.sleep(60)")
    child = procs.spawn("stubborn", [sys.executable, "-c", script], os.environ)
    processes.wait_for(lambda: child.tail().strip(), 10, "the grandchild's pid")
    grandchild = int(child.tail().split()[-1])
    started = time.monotonic()
    procs.stop(timeout=1)
    assert time.monotonic() - started < 10
    assert child.proc.poll() is not None
    processes.wait_for(lambda: not psutil.pid_exists(grandchild) or
                       psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE, 5,
                       "grandchild gone")


def test_without_any_redis_the_demo_says_what_to_install(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends.shutil, "which", lambda name: None)
    procs = processes.Processes(tmp_path)
    environ = {"REDIS_URL": f"redis://127.0.0.1:{processes.free_port()}/0"}
    with pytest.raises(processes.DemoError, match=r"apt-get install redis-server"):
        backends.start_redis(environ, procs)
    assert procs.children == []


# --- the whole demo -------------------------------------------------------------------------


def _survivors(pids: set[int], workdir: str) -> list[str]:
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or [])
            in_group = os.getpgid(proc.pid) in pids
        except (psutil.Error, ProcessLookupError):
            continue
        ours = proc.pid in pids or in_group or (workdir and workdir in cmdline)
        if ours and proc.status() != psutil.STATUS_ZOMBIE:
            found.append(f"{proc.pid}: {cmdline}")
    return found


@pytest.mark.slow
def test_make_run_once_converges_and_leaves_nothing_running() -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in {"REDIS_URL", "KLAVIYO_API_KEY", "KEY_PREFIX", "EXPORT_JOBS_FILE"}}
    env["RUN_ONCE"] = "1"
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "console.demo"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=290)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        pytest.fail(f"the demo took more than 290 s:\n{out[-4000:]}")
    seconds = time.monotonic() - started
    assert proc.returncode == 0, out[-4000:]
    assert seconds < 300
    for line in ("Demo finished in", 'list:', "members:   1,993 (expected 1,993)", "removed:   2",
                 "added:     1,995", "omitted:   8 (invalid_email 5, no_email 3)",
                 "stopped everything the demo started", "sandbox http://127.0.0.1:"):
        assert line in out, f"{line!r} not in:\n{out[-4000:]}"
    assert re.search(r"Flower: +(http://127\.0\.0\.1:\d+|not running)", out)
    pids = {int(p) for p in re.findall(r"started \w+ \(pid (\d+)", out)}
    assert {"redis", "sandbox", "webhook", "worker", "beat", "flower"} <= set(
        re.findall(r"started (\w+) \(pid", out))
    match = re.search(r"\(workdir (\S+)\)", out)
    workdir = match.group(1) if match else ""
    assert workdir and not Path(workdir).exists()  # removed after a successful run
    assert _survivors(pids, workdir) == []
