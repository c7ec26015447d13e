"""One configured HTTP session per Klaviyo key.

:class:`KlaviyoClient` sends one request per :meth:`KlaviyoClient.call` and turns the
answer into a :class:`KlaviyoResponse` or into the exception that
:mod:`worker.klaviyo.statuses` (the one table from status to action) names. It never
sleeps and never retries: callers decide from the exception's type. Batches over an
operation's caps are refused before anything is sent. Neither the key nor an unmasked
email ever reaches a message.

A client made :meth:`~KlaviyoClient.limited` charges every request to a
:class:`RequestLimiter` as it sends it (each page of a paginated read included), hands it
the headers of every other answer (``RateLimit-*``: the limiter calibrates itself from
them), and tells it of every 429; the limiter refuses a request by raising, and then
nothing is sent.
"""

from __future__ import annotations

import copy
import hashlib
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Protocol, Required, TypedDict, Unpack
from urllib.parse import quote

import orjson
import requests
from requests.adapters import HTTPAdapter

from contract.operations import Operation
from core.settings import load_settings
from worker.klaviyo.caps import check_caps
from worker.klaviyo.errors import RateLimited, TransientError
from worker.klaviyo.statuses import refusal

JSON_API = "application/vnd.api+json"


def _version() -> str:
    try:
        return metadata.version("klaviyo-audience-export")
    except metadata.PackageNotFoundError:
        return "0.0.0"


USER_AGENT = f"klaviyo-audience-export/{_version()}"


@dataclass(frozen=True)
class KlaviyoResponse:
    """A successful answer: its status, its parsed JSON:API document (or None) and headers."""

    status: int
    document: dict[str, Any] | None
    headers: Mapping[str, str]


def fingerprint(api_key: str) -> str:
    """The non-secret account fingerprint: the first 12 hex digits of SHA-256 of the key."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:12]


_TRANSPORT_ERRORS = (
    requests.Timeout,
    requests.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
)


class RequestLimiter(Protocol):
    """What a limited client asks before each request and tells after a 429."""

    def charge(self, account: str, op: Operation) -> object:
        """Count one request of ``op`` and return a ticket for :meth:`observe`, or raise
        (nothing is sent) when it must wait."""

    def observe(self, account: str, op: Operation, ticket: object,
                headers: Mapping[str, str]) -> None:
        """The answer (not a 429) to the request ``ticket`` was charged for: its headers."""

    def rate_limited(self, account: str, op: Operation, retry_after: float | None) -> None:
        """Klaviyo answered 429 to ``op``: pause it for every worker."""


class CallObserver(Protocol):
    """Told of every request's outcome (``core.metrics.CallRecorder``)."""

    def observe(self, account: str, operation: str, status: int, seconds: float) -> None: ...


class ClientOptions(TypedDict, total=False):
    """A client's keyword options: ``base_url`` and ``revision`` are required."""

    base_url: Required[str]
    revision: Required[str]
    connect_timeout: float
    read_timeout: float
    pool_size: int


@dataclass(frozen=True)
class _Settings:
    """:class:`ClientOptions` with their defaults filled in."""

    base_url: str
    revision: str
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    pool_size: int = 16


class KlaviyoClient:
    """A Klaviyo API client for one private key: one session, one pool, no retries."""

    def __init__(self, api_key: str, **options: Unpack[ClientOptions]) -> None:
        settings = _Settings(**options)
        self.base_url = settings.base_url.rstrip("/")
        self.revision = settings.revision
        self.timeout = (settings.connect_timeout, settings.read_timeout)
        self._account = fingerprint(api_key)
        self._session = _session(api_key, settings.revision, settings.pool_size)
        self._limiter: RequestLimiter | None = None
        self._observer: CallObserver | None = None

    @property
    def account(self) -> str:
        """The account fingerprint used for rate-limit and cache keys (never the key)."""
        return self._account

    def __repr__(self) -> str:
        return (
            f"KlaviyoClient(account={self._account!r}, base_url={self.base_url!r}, "
            f"revision={self.revision!r})"
        )

    def limited(self, limiter: RequestLimiter) -> KlaviyoClient:
        """This client (same key, session and pool) with every request charged to ``limiter``."""
        clone = copy.copy(self)
        clone._limiter = limiter
        return clone

    def observed(self, observer: CallObserver) -> KlaviyoClient:
        """This client with every answer (status, seconds) told to ``observer`` (metrics)."""
        clone = copy.copy(self)
        clone._observer = observer
        return clone

    def close(self) -> None:
        """Close the session's pooled connections."""
        self._session.close()

    def call(
        self,
        op: Operation,
        *,
        path: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> KlaviyoResponse:
        """Send ``op`` once; return the 2xx answer or raise the table's exception."""
        data = orjson.dumps(body) if body is not None else None
        check_caps(op, body, data, params)
        url = _url(self.base_url, op, path)
        limiter = self._limiter
        ticket = limiter.charge(self._account, op) if limiter is not None else None
        response = self._timed(op, url, params, data)
        if limiter is not None and response.status_code != 429:
            limiter.observe(self._account, op, ticket, response.headers)
        document = _document(op, response)
        error = refusal(op, response.status_code, document, response.headers)
        if error is not None:
            if isinstance(error, RateLimited) and self._limiter is not None:
                self._limiter.rate_limited(self._account, op, error.retry_after)
            raise error
        return KlaviyoResponse(response.status_code, document, response.headers)

    def _timed(
        self, op: Operation, url: str, params: dict[str, str] | None, data: bytes | None
    ) -> requests.Response:
        if self._observer is None:
            return self._send(op, url, params, data)
        started = time.perf_counter()
        status = 0
        try:
            response = self._send(op, url, params, data)
            status = response.status_code
            return response
        finally:
            self._observer.observe(self._account, op.name, status, time.perf_counter() - started)

    def _send(
        self, op: Operation, url: str, params: dict[str, str] | None, data: bytes | None
    ) -> requests.Response:
        try:
            return self._session.request(
                op.method, url, params=params, data=data,
                timeout=self.timeout, allow_redirects=False,
            )
        except _TRANSPORT_ERRORS as exc:
            # ``from None``: requests' exception carries the URL (emails in filters).
            message = f"{op.name} ({op.method} {op.path}) failed: {type(exc).__name__}"
            raise TransientError(message) from None


def _session(api_key: str, revision: str, pool_size: int) -> requests.Session:
    session = requests.Session()
    session.headers.update({
        "Authorization": f"Klaviyo-API-Key {api_key}",
        "revision": revision,
        "Accept": JSON_API,
        "Content-Type": JSON_API,
        "User-Agent": USER_AGENT,
    })
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def _url(base_url: str, op: Operation, path: dict[str, str] | None) -> str:
    values = {name: quote(value, safe="") for name, value in (path or {}).items()}
    try:
        return base_url + op.path.format(**values)
    except KeyError as exc:
        raise ValueError(f"{op.name}: path parameter {exc.args[0]!r} is missing") from None


def _document(op: Operation, response: requests.Response) -> dict[str, Any] | None:
    if not response.content:
        return None
    try:
        parsed = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict):
        return parsed
    if 200 <= response.status_code < 300:
        raise TransientError(
            f"{op.name} ({op.method} {op.path}) answered HTTP {response.status_code} "
            "with a body that is not a JSON object",
            response.status_code,
        )
    return None


_CLIENTS: dict[tuple[str, str, str, float, float, int], KlaviyoClient] = {}
_LOCK = threading.Lock()


def client_for(api_key: str, **options: Unpack[ClientOptions]) -> KlaviyoClient:
    """This process's client for ``api_key`` and these settings, created once."""
    digest = hashlib.sha256(api_key.encode()).hexdigest()
    s = _Settings(**options)
    key = (digest, s.base_url.rstrip("/"), s.revision, s.connect_timeout, s.read_timeout,
           s.pool_size)
    with _LOCK:
        client = _CLIENTS.get(key)
        if client is None:
            client = _CLIENTS[key] = KlaviyoClient(api_key, **options)
        return client


def from_settings(api_key: str) -> KlaviyoClient:
    """The cached client for ``api_key``, with base URL, revision and timeouts from settings."""
    settings = load_settings()
    return client_for(
        api_key,
        base_url=str(settings.klaviyo_base_url),
        revision=settings.klaviyo_revision,
        connect_timeout=settings.http_connect_timeout,
        read_timeout=settings.http_read_timeout,
    )


def reset_clients() -> None:
    """Close and forget every cached client (tests; a forked child only forgets)."""
    with _LOCK:
        clients = list(_CLIENTS.values())
        _CLIENTS.clear()
    for client in clients:
        client.close()


def _forget_after_fork() -> None:
    global _LOCK  # noqa: PLW0603 - a lock held at fork time stays held in the child
    _LOCK = threading.Lock()
    _CLIENTS.clear()  # the parent's sockets must not be shared with a child


os.register_at_fork(after_in_child=_forget_after_fork)
