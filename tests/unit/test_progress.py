"""Progress of long commands (issue #18): a rich bar with rate and ETA on a terminal, plain
periodic lines on a pipe."""

from __future__ import annotations

import io
import os
import pty
import re
import select
import subprocess
import sys
import textwrap
import time

from console.progress import Reporter, watch
from producers.backfill.progress import Progress
from tests.harness import ROOT

SCRIPT = textwrap.dedent("""
    import sys, time
    from console.progress import Reporter
    with Reporter("backfill r1", 200, sys.stdout, unit="profiles", every=0) as bar:
        for done in range(0, 201, 50):
            bar.update(done)
            time.sleep(0.05)
""")
# the audit's page callback, fed three pages of a 300-member list; its progress goes to stderr
AUDIT = textwrap.dedent("""
    import sys, time
    from console.commands.audit import progress
    on_page, close = progress(300, sys.stderr, what="audit vip", every=0)
    for _ in range(3):
        on_page(100)
        time.sleep(0.15)
    close()
""")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def run_on_pty(script: str = SCRIPT, stream: str = "stdout") -> str:
    """The script with a pseudo-terminal as its ``stream``; everything it wrote there."""
    leader, follower = pty.openpty()
    other = "stderr" if stream == "stdout" else "stdout"
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT,
                            env={**os.environ, "COLUMNS": "120"},
                            **{stream: follower, other: subprocess.PIPE})
    os.close(follower)
    out = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the follower side closed: the script ended
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    proc.wait(timeout=10)
    os.close(leader)
    left = getattr(proc, other)
    assert proc.returncode == 0, left.read() if left else ""
    return out.decode(errors="replace")


def test_on_a_terminal_a_bar_with_count_rate_and_eta_is_redrawn() -> None:
    out = run_on_pty()
    assert ANSI.search(out), "drawn with terminal control sequences"
    plain = ANSI.sub("", out)
    assert "backfill r1" in plain and "━" in plain  # rich's bar
    assert "200/200" in plain and "100%" in plain
    assert re.search(r"\d[\d,]*/s", plain), plain  # the rate column
    assert re.search(r"\d:\d\d:\d\d", plain), plain  # time remaining
    assert "50/200" in plain  # redrawn on the way, not only at the end


def test_on_a_pipe_plain_lines_without_control_sequences() -> None:
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=True)
    assert "\x1b" not in proc.stdout and "\r" not in proc.stdout
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("backfill r1: 0/200 profiles (0%)")
    assert re.fullmatch(r"backfill r1: 100/200 profiles \(50%\), [\d,]+/s, ETA \d+m\d\ds",
                        lines[2]), lines
    assert lines[-1].startswith("backfill r1: 200/200 profiles (100%)")


def test_lines_come_at_most_every_interval() -> None:
    out = io.StringIO()
    with Reporter("dlq replay vip", 1000, out, tty=False, every=3600, unit="letters") as bar:
        for done in range(0, 1001, 100):
            bar.update(done)
    assert out.getvalue().splitlines() == [out.getvalue().splitlines()[0]]
    assert out.getvalue().startswith("dlq replay vip: 1,000/1,000 letters (100%)")


def test_watch_follows_a_run_until_it_finishes() -> None:
    readings = iter([Progress("r", "running", 10, 10, d, d, 0, 0) for d in (0, 4, 8)]
                    + [Progress("r", "finished", 10, 10, 10, 10, 0, 0)])
    out = io.StringIO()
    final = watch(lambda: next(readings), out, tty=False, interval=0, every=0)
    assert final.finished
    assert out.getvalue().splitlines()[-1].startswith("backfill r: 10/10 profiles (100%)")


def test_audit_progress_is_the_same_bar_on_a_terminal() -> None:
    plain = ANSI.sub("", run_on_pty(AUDIT, "stderr"))
    assert "audit vip" in plain and "━" in plain  # rich's bar, not tqdm's
    assert "300/300" in plain and "100%" in plain
    assert re.search(r" [12]00/300 ", plain), plain  # redrawn on the way, not only at the end
    assert re.search(r"\d[\d,]*/s", plain), plain


def test_audit_progress_on_a_pipe_is_plain_lines_of_members_read() -> None:
    proc = subprocess.run([sys.executable, "-c", AUDIT], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=True)
    assert "\x1b" not in proc.stderr and "\r" not in proc.stderr and proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert lines[0].startswith("audit vip: 100/300 members (33%)"), lines
    assert re.fullmatch(r"audit vip: 200/300 members \(67%\), [\d,]+/s, ETA \d+m\d\ds",
                        lines[1]), lines
    assert lines[-1].startswith("audit vip: 300/300 members (100%)"), lines
