"""Members of Lytics audiences through the segment scan API, one page of 100 at a time.

``GET {base}/api/segment/{id}/scan?limit=100&fields=...&start=<_next>`` with
``Authorization: <token>`` (no "Bearer"). The last page has an empty or missing ``_next``;
``status`` may come as a string. 429, 5xx and dropped connections are retried with capped,
jittered backoff, a bounded number of times; any other error stops the scan.

A position is ``{"audience": i, "start": <token of the page>, "skip": <members of that
page already read>}``: resuming re-reads that page and skips what was done.

Each member is an enter in the audience being scanned (a profile in two selected audiences
is read twice, once in each). The scan response carries no time, so the snapshot time is
the moment the run first asks for it, before any page is read: every exit recorded after
that wins over the scan's enter, and no page can describe an earlier moment.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import requests

from core.backoff import backoff_seconds
from core.jobs import ExportJob
from producers.backfill.files import SourceError
from producers.backfill.member import Member, keep_fields

PAGE = 100
RETRIABLE = frozenset({429, 500, 502, 503, 504})


class ScanSource:
    """Every selected audience of ``job``, scanned in order."""

    def __init__(self, job: ExportJob, base_url: str, token: str, *,
                 session: requests.Session | None = None, max_attempts: int = 8,
                 sleep: Callable[[float], None] = time.sleep, timeout: float = 30.0,
                 clock: Callable[[], int] = time.time_ns) -> None:
        self.job, self.base_url, self.token = job, base_url.rstrip("/"), token
        self.clock, self._snapshot_ns = clock, 0
        self.fields = job.lytics_fields()
        self.session = session or requests.Session()
        self.max_attempts, self.sleep, self.timeout = max_attempts, sleep, timeout
        self.totals: dict[int, int] = {}

    def describe(self) -> str:
        return "scan:" + ",".join(self.job.audiences)

    def snapshot_ns(self) -> int:
        """When the scan started: the first time this is asked (before the first page)."""
        if not self._snapshot_ns:
            self._snapshot_ns = self.clock()
        return self._snapshot_ns

    def total(self) -> int | None:
        return sum(self.totals.values()) if self.totals else None

    def members(self, position: dict[str, Any]) -> Iterator[Member]:
        self.snapshot_ns()  # fixed before the first page, whoever asks for it later
        first = int(position.get("audience", 0))
        for index in range(first, len(self.job.audiences)):
            start = str(position.get("start", "")) if index == first else ""
            skip = int(position.get("skip", 0)) if index == first else 0
            yield from self._audience(index, start, skip)

    def _audience(self, index: int, start: str, skip: int) -> Iterator[Member]:
        audience = self.job.audiences[index]
        while True:
            body = self.page(audience, start)
            if "total" in body and index not in self.totals:
                self.totals[index] = int(body["total"])
            data = body.get("data") or []
            for i, profile in enumerate(data):
                if i >= skip and isinstance(profile, dict):
                    yield Member(keep_fields(self.fields, profile), (audience,),
                                 {"audience": index, "start": start, "skip": i + 1})
            start, skip = str(body.get("_next") or ""), 0
            if not start or not data:
                return

    def page(self, audience: str, start: str) -> dict[str, Any]:
        """One page, retried on 429/5xx/connection errors; SourceError otherwise."""
        params = {"limit": PAGE, "fields": ",".join((*self.fields, "segments"))}
        if start:
            params["start"] = start
        url = f"{self.base_url}/api/segment/{audience}/scan"
        for attempt in range(self.max_attempts):
            problem = self._try(url, params)
            if isinstance(problem, dict):
                return problem
            if attempt + 1 < self.max_attempts:
                self.sleep(backoff_seconds(attempt, base=0.5, cap=30.0))
        raise SourceError(f"Lytics scan of {audience!r} kept failing ({problem}); "
                          f"rerun to resume")

    def _try(self, url: str, params: dict[str, Any]) -> dict[str, Any] | str:
        try:
            resp = self.session.get(url, params=params, timeout=self.timeout,
                                    headers={"Authorization": self.token})
        except requests.RequestException as exc:
            return type(exc).__name__
        body: Any = _json(resp)
        status = _status(resp.status_code, body)
        if status in RETRIABLE:
            return f"HTTP {status}"
        if status != 200 or not isinstance(body, dict):
            message = body.get("message", "") if isinstance(body, dict) else ""
            raise SourceError(f"Lytics scan refused ({status}): {message}".rstrip(": "))
        return body


def _json(resp: requests.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


def _status(http_status: int, body: Any) -> int:
    """The HTTP status, unless it is 200 and the body says otherwise (maybe as a string)."""
    if http_status != 200 or not isinstance(body, dict):
        return http_status
    try:
        return int(body.get("status", 200))
    except (TypeError, ValueError):
        return http_status
