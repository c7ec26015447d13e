"""Run the sandbox under uvicorn, in a background thread (tests) or in the foreground.

    with running_sandbox(speed=60) as sb:                      # a real account's behaviour
        requests.get(f"{sb.url}/api/lists", headers=...)
    with running_sandbox(profile="fast", job_delay=0.05) as sb:  # today's instant sandbox
        ...

``SandboxServer.sandbox`` is the live state (thread-safe under ``sandbox.lock``);
the helpers below call it directly, the same code the ``/_sandbox/`` routes call.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn

from sandbox.app import build_app
from sandbox.core import Sandbox
from sandbox.faults import Faults
from sandbox.realism import Delay, Realism, build


def uvicorn_config(sandbox: Sandbox, host: str, port: int, log_level: str) -> uvicorn.Config:
    """Plain HTTP/1.1 on asyncio; the app must be the outermost ASGI callable (drops)."""
    return uvicorn.Config(build_app(sandbox), host=host, port=port, log_level=log_level,
                          access_log=False, lifespan="off", proxy_headers=False,
                          server_header=False, date_header=False, timeout_keep_alive=30)


def tune_gc() -> None:
    """Raise CPython's GC thresholds for a process that holds millions of profiles.

    The defaults rescan young objects every 700 allocations, and each 1,000-profile
    request allocates tens of thousands; the sandbox makes few reference cycles.
    """
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


class SandboxServer:
    """A sandbox listening on ``host:port`` (port 0: any free port) in a daemon thread.

    ``profile`` is ``"realistic"`` (a real account's behaviour, the default) or ``"fast"``;
    ``job_delay`` and any other knob of :class:`sandbox.realism.Realism` (``latency=0``,
    ``foreign_share=0.2``, ...) override the profile's value."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, speed: float = 1.0, *,
                 profile: str = "realistic", job_delay: Delay | float | str | None = None,
                 validate: bool = True, lytics_members: Path | None = None,
                 lytics_token: str | None = None, log_level: str = "warning",
                 gc_tuning: bool = False, **knobs: Any) -> None:
        if gc_tuning:
            tune_gc()  # process-wide: off by default when embedded in a test process
        self.host = host
        self.port = port
        self.realism: Realism = build(profile, job_delay=job_delay, **knobs)
        self.sandbox = Sandbox(speed=speed, realism=self.realism, validate=validate,
                               lytics_members=lytics_members, lytics_token=lytics_token)
        self._server = uvicorn.Server(uvicorn_config(self.sandbox, host, port, log_level))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://host:port``, the base URL to give a client."""
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> SandboxServer:
        """Serve in a background thread; return once the socket listens."""
        self._thread = threading.Thread(target=self._server.run, name="sandbox", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"sandbox did not start on {self.host}:{self.port}")
            time.sleep(0.01)
        sockets = [s for srv in self._server.servers for s in srv.sockets]
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and wait for the thread."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- helpers (no HTTP) -------------------------------------------------------------

    def reset(self) -> None:
        """Forget accounts, quotas, stats, faults and jobs."""
        self.sandbox.reset()

    def set_faults(self, **config: Any) -> None:
        """Same fields as ``POST /_sandbox/faults``."""
        faults = Faults.parse(config)
        with self.sandbox.lock:
            self.sandbox.faults = faults

    def clear_faults(self) -> None:
        """No more faults."""
        with self.sandbox.lock:
            self.sandbox.faults = Faults()

    def stats(self) -> dict[str, Any]:
        """Same document as ``GET /_sandbox/stats``."""
        with self.sandbox.lock:
            return self.sandbox.stats.snapshot()

    def confirm(self, list_id: str | None = None, emails: list[str] | None = None) -> int:
        """Confirm pending double opt-ins."""
        return self.sandbox.confirm(list_id, emails)

    def suppress(self, emails: list[str], reason: str = "UNSUBSCRIBE",
                 list_id: str | None = None) -> int:
        """Suppress people as their inbox would (same as ``POST /_sandbox/suppress``)."""
        return self.sandbox.suppress(emails, reason, list_id)

    def list_emails(self, list_id: str) -> list[str]:
        """All member emails of a list (empty for an unknown list)."""
        found = self.sandbox.list_emails(list_id)
        return list(found["emails"]) if found else []

    def load_segment(self, segment: str, members: list[dict[str, Any]]) -> None:
        """Replace a Lytics segment's members."""
        with self.sandbox.lock:
            self.sandbox.lytics.put(segment, members)


@contextmanager
def running_sandbox(**options: Any) -> Iterator[SandboxServer]:
    """A started sandbox for a ``with`` block or a pytest fixture (``yield from``)."""
    server = SandboxServer(**options).start()
    try:
        yield server
    finally:
        server.stop()


def serve_forever(host: str, port: int, speed: float, *, realism: Realism,
                  validate: bool = True, lytics_members: Path | None = None,
                  lytics_token: str | None = None, log_level: str = "info") -> None:
    """Run in the foreground until interrupted (the CLI)."""
    sandbox = Sandbox(speed=speed, realism=realism, validate=validate,
                      lytics_members=lytics_members, lytics_token=lytics_token)
    tune_gc()
    uvicorn.Server(uvicorn_config(sandbox, host, port, log_level)).run()
