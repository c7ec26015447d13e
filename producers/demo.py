"""``make run``: the whole stack on embedded defaults, driven end to end.

Redis (``REDIS_URL`` when it answers, else a private ``redis-server``), the sandbox when
``KLAVIYO_API_KEY`` is not set, the webhook receiver, one worker, beat and Flower, all as
subprocesses in their own process groups. It backfills ``examples/sample-audience.jsonl``,
posts live enter and exit events through the webhook, waits (bounded) until the list holds
what it should, and prints a summary. Ctrl-C (or ``RUN_ONCE=1``) stops everything it started.

Every run uses its own ``KEY_PREFIX`` (``demo<timestamp>``), so reruns start clean.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import redis
import requests

from worker.commands import beat_argv, worker_argv
from worker.normalize import normalize_email

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
JOBS_FILE = EXAMPLES / "demo-jobs.toml"
SAMPLE_AUDIENCE = EXAMPLES / "sample-audience.jsonl"
LIVE_EVENTS = EXAMPLES / "webhooks" / "live-events.json"
JOB_ID = "demo"
DEMO_TOKEN = "demo-token"  # noqa: S105 - a documented throwaway token for the local demo
FLOWER_PORT = 5555
STOP_TIMEOUT = 10.0
SETTLE_TIMEOUT = 180.0
BODIES_PER_POST = 500
INSTALL_REDIS = (
    "No Redis: REDIS_URL is not set or does not answer, and redis-server is not installed.\n"
    "Install it (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis)\n"
    "or point REDIS_URL at a running Redis, then run `make run` again."
)
# Short periods for the sandbox only: against a real account the production defaults apply.
SANDBOX_KNOBS = {
    "FLUSH_INTERVAL_SECONDS": "0.5",
    "SUBSCRIBE_SETTLE_SECONDS": "1",
    "POLL_INTERVAL_SECONDS": "0.5",
    "SWEEP_INTERVAL_SECONDS": "2",
}


class DemoError(Exception):
    """The demo cannot go on; the message says why."""


# --- pure helpers ---------------------------------------------------------------------------


def free_port(preferred: int | None = None) -> int:
    """``preferred`` when nothing listens on it, else any free loopback port."""
    for candidate in ([preferred] if preferred else []) + [0]:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise DemoError("no free TCP port on 127.0.0.1")


def redis_answers(url: str, timeout: float = 1.0) -> bool:
    """True when a Redis at ``url`` answers PING."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, ValueError, OSError):
        return False


def choose_redis(environ: Mapping[str, str], answers: Callable[[str], bool] = redis_answers
                 ) -> str | None:
    """``REDIS_URL`` when it is set and answers; None means: start a private redis-server."""
    url = environ.get("REDIS_URL", "").strip()
    return url if url and answers(url) else None


def redis_server_argv(binary: str, port: int, workdir: Path) -> list[str]:
    """A private, loopback-only redis-server with the production persistence settings."""
    return [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir),
            "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
            "--maxmemory-policy", "noeviction", "--logfile", "redis.log"]


def demo_prefix(now: float) -> str:
    """A KEY_PREFIX of its own for each run: ``demo`` and the time in milliseconds."""
    return f"demo{int(now * 1000)}"


def rfc3339(ts: float) -> str:
    """Seconds since the epoch → the timestamp form Lytics sends."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def read_profiles(path: Path) -> list[dict[str, Any]]:
    """The sample audience: one Lytics profile per line, membership in ``segments``."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]


def split_by_segment(profiles: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Profiles grouped by audience slug, as the sandbox's ``--lytics-members`` files hold them."""
    out: dict[str, list[dict[str, Any]]] = {}
    for profile in profiles:
        for segment in profile.get("segments", []):
            out.setdefault(segment, []).append(profile)
    return out


def enter_body(profile: Mapping[str, Any], stamp: str) -> dict[str, Any]:
    """One Lytics webhook body in which ``profile`` enters each of its audiences."""
    data = {k: v for k, v in profile.items() if k != "segments"}
    data["segment_events"] = [{"slug": s, "event": "enter", "enter": stamp}
                              for s in profile.get("segments", [])]
    return {"data": data, "meta": {"object": "user", "timestamp": stamp}}


def restamp(bodies: Sequence[dict[str, Any]], stamp: str) -> list[dict[str, Any]]:
    """Copies of webhook bodies whose every timestamp is ``stamp`` (events happen now)."""
    out = []
    for body in bodies:
        copy = json.loads(json.dumps(body))
        copy.setdefault("meta", {})["timestamp"] = stamp
        for entry in copy["data"]["segment_events"]:
            entry[entry["event"]] = stamp
        out.append(copy)
    return out


def _entry_audience(entry: Mapping[str, Any], audiences: Sequence[str]) -> str | None:
    for key in ("id", "slug"):
        if entry.get(key) in audiences:
            return str(entry[key])
    return None


def expected_members(profiles: Iterable[Mapping[str, Any]], bodies: Iterable[Mapping[str, Any]],
                     audiences: Sequence[str]) -> set[str]:
    """The emails the list must hold: the backfill, then the live events, in order."""
    held: dict[str, set[str]] = {}
    for profile in profiles:
        email = normalize_email(profile.get("email"))
        if email:
            held.setdefault(email, set()).update(a for a in profile.get("segments", [])
                                                 if a in audiences)
    for body in bodies:
        email = normalize_email(body["data"].get("email"))
        if not email:
            continue
        for entry in body["data"]["segment_events"]:
            audience = _entry_audience(entry, audiences)
            if audience is None:
                continue
            if entry["event"] == "enter":
                held.setdefault(email, set()).add(audience)
            elif entry["event"] == "exit":
                held.setdefault(email, set()).discard(audience)
    return {email for email, member_of in held.items() if member_of}


@dataclass(frozen=True)
class Summary:
    """What the demo shows when it is done."""

    list_id: str | None
    list_name: str
    members: int | None  # None: membership cannot be read (a real Klaviyo account)
    expected: int | None
    matched: bool
    status: Mapping[str, Any]
    flower_url: str | None
    webhook_url: str
    klaviyo: str
    seconds: float
    backfill: str
    prefix: str


def format_omitted(omitted: Mapping[str, int]) -> str:
    """``8 (invalid_email 5, no_email 3)``, or ``0``."""
    total = sum(omitted.values())
    if not total:
        return "0"
    parts = ", ".join(f"{reason} {n}" for reason, n in sorted(omitted.items()))
    return f"{total} ({parts})"


def format_summary(s: Summary) -> list[str]:
    """The summary lines, one fact each."""
    st = s.status
    members = "unknown" if s.members is None else f"{s.members:,}"
    if s.expected is not None:
        members += f" (expected {s.expected:,})"
    lines = [
        f"Demo {'finished' if s.matched else 'did NOT converge'} in {s.seconds:.0f} s "
        f"(KEY_PREFIX {s.prefix}, backfill: {s.backfill})",
        f"  Klaviyo:   {s.klaviyo}",
        f"  list:      {s.list_id or '-'} \"{s.list_name}\" ({st.get('status', 'new')})",
        f"  members:   {members}",
        f"  added:     {int(st.get('added', 0)):,}",
        f"  removed:   {int(st.get('removed', 0)):,}",
        f"  omitted:   {format_omitted(st.get('omitted') or {})}",
        f"  failed:    {int(st.get('failed', 0)):,}  dead-lettered: "
        f"{int(st.get('dead_lettered', 0)):,}  pending: {int(st.get('pending', 0)):,}",
        f"  webhook:   POST {s.webhook_url} (Authorization: Bearer <WEBHOOK_TOKEN>)",
        f"  Flower:    {s.flower_url or 'not running (see warning above)'}",
    ]
    if st.get("reason") and st.get("status") != "ready":
        lines.append(f"  reason:    {st['reason']}")
    if st.get("last_error"):
        lines.append(f"  last error: {st['last_error']}")
    return lines


def run_once(environ: Mapping[str, str]) -> bool:
    """True when ``RUN_ONCE`` asks the demo to stop by itself after the summary."""
    return environ.get("RUN_ONCE", "").strip().lower() in {"1", "true", "yes", "on"}


def wait_for(predicate: Callable[[], object], timeout: float, what: str,
             interval: float = 0.25) -> object:
    """Poll until ``predicate`` returns something truthy; DemoError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise DemoError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def http_ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


# --- processes ------------------------------------------------------------------------------


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, chars: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


@dataclass
class Processes:
    """Every process the demo started, each leading its own process group."""

    workdir: Path
    children: list[Child] = field(default_factory=list)

    def spawn(self, name: str, argv: Sequence[str], env: Mapping[str, str]) -> Child:
        log = self.workdir / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(list(argv), cwd=ROOT, env=dict(env), stdout=out,  # noqa: S603
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        child = Child(name, proc, log)
        self.children.append(child)
        print(f"  started {name} (pid {proc.pid}, log {log})", flush=True)
        return child

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM every group (newest first), then SIGKILL whatever is left after ``timeout``."""
        for child in reversed(self.children):
            _signal_group(child.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in reversed(self.children):
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"  {child.name} did not stop in {timeout:.0f} s: killing it", flush=True)
        for child in self.children:  # the leader may be gone while its children linger
            _signal_group(child.proc.pid, signal.SIGKILL)
            if child.proc.poll() is None:
                child.proc.wait(timeout=5)
        self.children.clear()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


# --- the run --------------------------------------------------------------------------------


@dataclass
class Demo:
    environ: dict[str, str]
    procs: Processes
    started: float = field(default_factory=time.monotonic)
    env: dict[str, str] = field(default_factory=dict)
    sandbox_url: str | None = None
    flower_url: str | None = None
    webhook_url: str = ""
    backfill: str = ""

    @property
    def python(self) -> str:
        return sys.executable

    def setup_redis(self) -> str:
        url = choose_redis(self.environ)
        if url:
            print("Redis: using REDIS_URL (it answers PING)", flush=True)
            return url
        if self.environ.get("REDIS_URL"):
            print("Redis: REDIS_URL does not answer; starting a private redis-server", flush=True)
        binary = shutil.which("redis-server")
        if binary is None:
            raise DemoError(INSTALL_REDIS)
        port = free_port()
        data = self.procs.workdir / "redis"
        data.mkdir()
        child = self.procs.spawn("redis", redis_server_argv(binary, port, data), self.environ)
        url = f"redis://127.0.0.1:{port}/0"
        wait_for(lambda: redis_answers(url) or not child.alive(), 15, "redis-server to answer")
        if not child.alive():
            raise DemoError(f"redis-server exited:\n{child.tail()}")
        print(f"Redis: private redis-server on 127.0.0.1:{port} (appendonly, data in {data})",
              flush=True)
        return url

    def setup_klaviyo(self, profiles: list[dict[str, Any]], prefix: str) -> dict[str, str]:
        if self.environ.get("KLAVIYO_API_KEY"):
            base = self.environ.get("KLAVIYO_BASE_URL", "https://a.klaviyo.com")
            print(f"Klaviyo: KLAVIYO_API_KEY is set, so the demo writes to {base}: "
                  "a list named \"Lytics demo\" in that account", flush=True)
            return {}
        members = self.procs.workdir / "lytics-members"
        members.mkdir()
        for segment, rows in split_by_segment(profiles).items():
            (members / f"{segment}.jsonl").write_text(
                "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        port = free_port()
        child = self.procs.spawn("sandbox", [
            self.python, "-m", "sandbox", "--host", "127.0.0.1", "--port", str(port),
            "--lytics-members", str(members), "--log-level", "warning"], self.environ)
        self.sandbox_url = f"http://127.0.0.1:{port}"
        wait_for(lambda: http_ok(f"{self.sandbox_url}/_sandbox/faults") or not child.alive(), 30,
                 "the sandbox to listen")
        if not child.alive():
            raise DemoError(f"the sandbox exited:\n{child.tail()}")
        print(f"Klaviyo: no KLAVIYO_API_KEY, so the demo runs against the sandbox at "
              f"{self.sandbox_url} (a local Klaviyo with its real limits)", flush=True)
        return {"KLAVIYO_BASE_URL": self.sandbox_url, "KLAVIYO_API_KEY": f"pk_demo_{prefix}",
                "LYTICS_BASE_URL": self.sandbox_url, "LYTICS_API_TOKEN": "demo-lytics-token",
                **{k: self.environ.get(k, v) for k, v in SANDBOX_KNOBS.items()}}

    def start_services(self) -> None:
        env = self.env
        port = free_port()
        webhook = self.procs.spawn("webhook", [self.python, "-m", "producers.cli", "webhook",
                                               "--host", "127.0.0.1", "--port", str(port)], env)
        worker = self.procs.spawn(
            "worker", worker_argv(f"demo-{env['KEY_PREFIX']}", python=self.python), env)
        self.procs.spawn("beat", beat_argv(self.python), env)
        flower_port = free_port(FLOWER_PORT)
        flower = self.procs.spawn("flower", [
            self.python, "-m", "celery", "-A", "worker", "flower", "--address=127.0.0.1",
            f"--port={flower_port}"], env)
        self.webhook_url = f"http://127.0.0.1:{port}/webhooks/lytics/{JOB_ID}"
        wait_for(lambda: http_ok(f"http://127.0.0.1:{port}/readyz") or not webhook.alive(), 60,
                 "the webhook receiver to be ready")
        if not webhook.alive():
            raise DemoError(f"the webhook receiver exited:\n{webhook.tail()}")
        wait_for(lambda: "ready." in worker.tail(20_000) or not worker.alive(), 90,
                 "the worker to be ready")
        if not worker.alive():
            raise DemoError(f"the worker exited:\n{worker.tail()}")
        url = f"http://127.0.0.1:{flower_port}"
        with contextlib.suppress(DemoError):
            wait_for(lambda: http_ok(f"{url}/healthcheck") or not flower.alive(), 30,
                     "Flower to answer")
        if flower.alive() and http_ok(f"{url}/healthcheck"):
            self.flower_url = url
        else:
            print(f"warning: Flower did not start (the demo goes on without it); see {flower.log}",
                  flush=True)

    def start_supports_from_file(self) -> bool:
        """True once ``klaviyo-export start`` takes ``--from-file`` (the backfill command)."""
        done = subprocess.run([self.python, "-m", "producers.cli", "start", "--help"],  # noqa: S603
                              cwd=ROOT, env=self.env, capture_output=True, text=True,
                              timeout=60, check=False)
        return done.returncode == 0 and "--from-file" in done.stdout

    def run_backfill(self, profiles: list[dict[str, Any]]) -> None:
        if self.start_supports_from_file():
            print(f"Backfill: klaviyo-export start {JOB_ID} --from-file "
                  f"{SAMPLE_AUDIENCE.relative_to(ROOT)} --wait", flush=True)
            done = subprocess.run([self.python, "-m", "producers.cli", "start", JOB_ID,  # noqa: S603
                                   "--from-file", str(SAMPLE_AUDIENCE), "--wait"],
                                  cwd=ROOT, env=self.env, timeout=SETTLE_TIMEOUT, check=False)
            if done.returncode == 0:
                self.backfill = "klaviyo-export start --from-file"
                return
            print(f"warning: the backfill command exited with {done.returncode}; "
                  "sending the audience through the webhook instead", flush=True)
        else:
            print("Backfill: `klaviyo-export start --from-file` is not available yet, so the "
                  "sample audience goes through the webhook as enter events", flush=True)
        self.backfill = "enter events through the webhook"
        stamp = rfc3339(time.time())
        bodies = [enter_body(p, stamp) for p in profiles]
        for start in range(0, len(bodies), BODIES_PER_POST):
            self.post(bodies[start:start + BODIES_PER_POST])
        print(f"  posted {len(bodies):,} profiles", flush=True)

    def post(self, bodies: list[dict[str, Any]]) -> dict[str, Any]:
        resp = requests.post(self.webhook_url, json=bodies, timeout=30,
                             headers={"Authorization": f"Bearer {self.env['WEBHOOK_TOKEN']}"})
        if resp.status_code != 202:
            raise DemoError(f"the webhook answered {resp.status_code}: {resp.text[:300]}")
        answer: dict[str, Any] = resp.json()
        return answer

    def status(self) -> dict[str, Any]:
        from producers.commands.status import job_status  # noqa: PLC0415 - needs KEY_PREFIX set

        client = redis.Redis.from_url(self.env["REDIS_URL"], socket_connect_timeout=3)
        try:
            return job_status(client, self.env["KEY_PREFIX"], JOB_ID)
        finally:
            client.close()

    def list_emails(self, list_id: str) -> set[str]:
        resp = requests.get(f"{self.sandbox_url}/_sandbox/lists/{list_id}/emails", timeout=10)
        resp.raise_for_status()
        return {str(e).lower() for e in resp.json()["emails"]}

    def settled(self, expected: set[str]) -> bool:
        row = self.status()
        if row["status"] in {"failed", "auth_failed"}:
            raise DemoError(f"job {JOB_ID} is {row['status']}: {row['reason']}")
        if not row["list_id"] or row["pending"] or row["inflight"]:
            return False
        if self.sandbox_url is None:
            return True
        return self.list_emails(row["list_id"]) == expected


def main() -> int:
    environ = dict(os.environ)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="kae-demo-"))
    procs = Processes(workdir)
    demo = Demo(environ, procs)
    code = 1
    print(f"klaviyo-audience-export demo (workdir {workdir})", flush=True)
    try:
        code = _run(demo)
        if code == 0 and not run_once(environ):
            print("\nThe stack stays up; press Ctrl-C to stop everything the demo started.",
                  flush=True)
            _watch(procs)
    except DemoError as exc:
        print(f"demo: {exc}", file=sys.stderr, flush=True)
        code = 1
    except KeyboardInterrupt:
        print("\nstopping...", flush=True)
        code = 0 if code == 0 else 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        procs.stop()
        if code == 0 or not any(workdir.iterdir()):
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"logs kept in {workdir}", flush=True)
        print("stopped everything the demo started", flush=True)
    return code


def _run(demo: Demo) -> int:
    profiles = read_profiles(SAMPLE_AUDIENCE)
    live = json.loads(LIVE_EVENTS.read_text(encoding="utf-8"))
    prefix = demo_prefix(time.time())
    redis_url = demo.setup_redis()
    base = {k: v for k, v in demo.environ.items() if not k.startswith("CELERY_")}
    demo.env = {**base, "REDIS_URL": redis_url, "KEY_PREFIX": prefix,
                "EXPORT_JOBS_FILE": str(JOBS_FILE), "PYTHONUNBUFFERED": "1",
                "WEBHOOK_TOKEN": demo.environ.get("WEBHOOK_TOKEN") or DEMO_TOKEN}
    demo.env.update(demo.setup_klaviyo(profiles, prefix))
    demo.start_services()
    demo.run_backfill(profiles)
    from worker.jobs import load_jobs  # noqa: PLC0415

    job = load_jobs(JOBS_FILE).get(JOB_ID)
    backfilled = expected_members(profiles, [], job.audiences)
    wait_for(lambda: demo.settled(backfilled), SETTLE_TIMEOUT, "the backfill to reach the list",
             interval=1)
    print(f"Backfill applied: the list holds {len(backfilled):,} members", flush=True)
    stamp = rfc3339(time.time())
    events = restamp(live, stamp)
    answer = demo.post(events)
    print(f"Live events: {len(events)} bodies posted to the webhook ({answer['accepted']} events "
          "accepted): 3 new users enter, 2 members exit, 1 member leaves one of two audiences",
          flush=True)
    expected = expected_members(profiles, events, job.audiences)
    matched = True
    try:
        wait_for(lambda: demo.settled(expected), SETTLE_TIMEOUT, "the list to match", interval=1)
    except DemoError as exc:
        print(f"warning: {exc}", flush=True)
        matched = False
    row = demo.status()
    members = None
    if demo.sandbox_url and row["list_id"]:
        members = len(demo.list_emails(row["list_id"]))
    summary = Summary(
        list_id=row["list_id"], list_name=job.list_name(), members=members,
        expected=len(expected) if demo.sandbox_url else None, matched=matched, status=row,
        flower_url=demo.flower_url, webhook_url=demo.webhook_url,
        klaviyo=f"sandbox {demo.sandbox_url}" if demo.sandbox_url
        else demo.env.get("KLAVIYO_BASE_URL", "https://a.klaviyo.com"),
        seconds=time.monotonic() - demo.started, backfill=demo.backfill, prefix=prefix)
    print("\n" + "\n".join(format_summary(summary)), flush=True)
    return 0 if matched else 1


def _watch(procs: Processes) -> None:
    warned: set[str] = set()
    while True:
        time.sleep(1)
        for child in procs.children:
            if not child.alive() and child.name not in warned:
                warned.add(child.name)
                print(f"warning: {child.name} exited ({child.proc.returncode}); see {child.log}",
                      flush=True)


if __name__ == "__main__":
    sys.exit(main())
