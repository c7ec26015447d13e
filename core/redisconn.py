"""The one owner of Redis connections: every process builds its clients here.

``REDIS_URL`` is either one Redis (``redis://``, ``rediss://``, ``unix://``) or a Sentinel
deployment spelled as Celery spells it: ``sentinel://h1:26379;sentinel://h2:26379[/db]``, the
master named by ``REDIS_SENTINEL_MASTER`` (default ``mymaster``). :func:`parse_redis_url`
validates it (settings call it, so a bad URL stops a process at start); :func:`client` gives
a redis-py client that follows the master (:meth:`redis.sentinel.Sentinel.master_for`): each
new connection asks the sentinels where the master is, a connection to a demoted master is
dropped on its first ``READONLY`` answer, and redis-py's retries reconnect. Celery's broker
and results (:func:`celery_urls`) and RedBeat (:func:`redbeat_options`) get the same target.

What a 202 promises is decided here too: :func:`confirm_replicated` makes sure what the
caller has just published (on *any* connection to the master, e.g. kombu's) has reached at
least ``n`` replicas. ``WAIT`` only counts the replication offset of the writes made on its
own connection, so it is sent right after a small write of its own on the same connection
(one pipeline): that write comes after the publish in the master's replication stream, so a
replica that acknowledges it holds the publish as well. A change of master between the
publish and the check (a failover) is refused, since the publish may have been lost with the
old master.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import redis
from redis.sentinel import Sentinel, SentinelConnectionPool, SentinelConnectionPoolProxy

from core.keys import replication_fence_key

if TYPE_CHECKING:
    from core.settings import Settings

SENTINEL_SCHEME = "sentinel"
PLAIN_SCHEMES = ("redis", "rediss", "unix")
DEFAULT_SENTINEL_PORT = 26379
DEFAULT_MASTER = "mymaster"
SENTINEL_SOCKET_TIMEOUT = 2.0  # a sentinel that does not answer is skipped for the next one


class RedisUrlError(ValueError):
    """``REDIS_URL`` cannot be used; the message says why (never the password)."""


@dataclass(frozen=True)
class RedisTarget:
    """Where Redis is: one server (``url``) or the sentinels that know the master."""

    url: str = field(repr=False)  # the plain URL, or the sentinel list (may hold a password)
    sentinels: tuple[tuple[str, int], ...] = ()
    db: int = 0
    username: str | None = None  # from a sentinel URL's first part (plain URLs keep theirs)
    password: str | None = field(default=None, repr=False)

    @property
    def is_sentinel(self) -> bool:
        return bool(self.sentinels)


def parse_redis_url(text: str) -> RedisTarget:
    """Validate ``REDIS_URL``; raise :class:`RedisUrlError` naming what is wrong."""
    text = text.strip()
    if not text:
        raise RedisUrlError("empty; give redis://host:port/db or sentinel://host:port;...")
    if text.split(":", 1)[0].lower() != SENTINEL_SCHEME:
        return _plain(text)
    sentinels: list[tuple[str, int]] = []
    dbs: set[int] = set()
    username = password = None
    for i, part in enumerate(p.strip() for p in text.split(";")):
        if not part:
            continue
        parts = _split(part)
        if parts.scheme != SENTINEL_SCHEME:
            raise RedisUrlError(f"part {i + 1} is not a sentinel:// address")
        if not parts.hostname:
            raise RedisUrlError(f"part {i + 1} has no host")
        port = _port(parts, DEFAULT_SENTINEL_PORT)
        sentinels.append((parts.hostname, port))
        path = parts.path.strip("/")
        if path:
            if not path.isdigit():
                raise RedisUrlError(f"part {i + 1}: the database must be a number, not {path!r}")
            dbs.add(int(path))
        if i == 0:
            username = unquote(parts.username) if parts.username else None
            password = unquote(parts.password) if parts.password else None
    if not sentinels:
        raise RedisUrlError("no sentinel address")
    if len(dbs) > 1:
        raise RedisUrlError("the sentinel addresses name different databases")
    return RedisTarget(text, tuple(sentinels), dbs.pop() if dbs else 0, username, password)


def _split(part: str) -> Any:
    try:
        parts = urlsplit(part)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise RedisUrlError(f"not a URL ({exc})") from None
    return parts


def _port(parts: Any, default: int) -> int:
    port = parts.port if parts.port is not None else default
    if not 0 < port < 65536:
        raise RedisUrlError(f"port {port} is out of range")
    return int(port)


def _plain(text: str) -> RedisTarget:
    parts = _split(text)
    if parts.scheme not in PLAIN_SCHEMES:
        raise RedisUrlError(
            f"scheme {parts.scheme or '(none)'!r} is not one of redis, rediss, unix, sentinel")
    if parts.scheme != "unix" and not parts.hostname:
        raise RedisUrlError("no host")
    path = parts.path.strip("/")
    if parts.scheme != "unix" and path and not path.isdigit():
        raise RedisUrlError(f"the database must be a number, not {path!r}")
    return RedisTarget(text, db=int(path) if parts.scheme != "unix" and path else 0)


class _CountingProxy(SentinelConnectionPoolProxy):
    """What a sentinel-managed connection asks for the master's address: counts its changes."""

    changes = 0
    last: tuple[str, int] | None = None  # unlike master_address, never reset

    def get_master_address(self) -> Any:
        address = super().get_master_address()  # type: ignore[no-untyped-call]
        if self.last is not None and tuple(address) != self.last:
            self.changes += 1
        self.last = (str(address[0]), int(address[1]))
        return address


class FollowingPool(SentinelConnectionPool):
    """A master pool that counts the changes of master it has seen (failovers)."""

    def __init__(self, service_name: str, sentinel_manager: Sentinel, **kwargs: Any) -> None:
        super().__init__(service_name, sentinel_manager, **kwargs)  # type: ignore[no-untyped-call]
        self.counting = _CountingProxy(  # type: ignore[no-untyped-call]
            connection_pool=self, is_master=self.is_master,
            check_connection=self.check_connection, service_name=service_name,
            sentinel_manager=sentinel_manager)
        self.proxy = self.counting
        self.connection_kwargs["connection_pool"] = self.counting

    @property
    def changes(self) -> int:
        return self.counting.changes

    @property
    def last_master(self) -> tuple[str, int] | None:
        return self.counting.last


def master_generation(client: redis.Redis) -> int:
    """How many times this client's pool has followed the master to a new address."""
    pool = client.connection_pool
    return pool.changes if isinstance(pool, FollowingPool) else 0


def master_address(client: redis.Redis) -> tuple[str, int] | None:
    """The master this client's pool last connected to (None for a plain client)."""
    pool = client.connection_pool
    return pool.last_master if isinstance(pool, FollowingPool) else None


def _credentials(settings: Settings, target: RedisTarget) -> dict[str, str]:
    """The data nodes' username and password: the settings win over the URL's."""
    out: dict[str, str] = {}
    username = settings.redis_username or target.username
    password = (settings.redis_password.get_secret_value() if settings.redis_password
                else target.password)
    if username:
        out["username"] = username
    if password:
        out["password"] = password
    return out


def sentinel_kwargs(settings: Settings) -> dict[str, Any]:
    """How to talk to the sentinels themselves (their own password, if they have one)."""
    kwargs: dict[str, Any] = {"socket_timeout": SENTINEL_SOCKET_TIMEOUT,
                              "socket_connect_timeout": SENTINEL_SOCKET_TIMEOUT}
    if settings.redis_sentinel_password:
        kwargs["password"] = settings.redis_sentinel_password.get_secret_value()
    return kwargs


def client(settings: Settings, **options: Any) -> redis.Redis:
    """A redis-py client for ``REDIS_URL``: it follows the master when that is a Sentinel URL.

    ``options`` are redis-py connection options (timeouts, ``decode_responses``...).
    """
    target = settings.redis_target
    if not target.is_sentinel:
        return redis.Redis.from_url(_plain_with_credentials(settings, target), **options)
    return _master_client(target, settings.redis_sentinel_master, _credentials(settings, target),
                          sentinel_kwargs(settings), options)


def url_client(url: str, master: str = DEFAULT_MASTER, **options: Any) -> redis.Redis:
    """A client for a URL alone (credentials only from the URL), e.g. the demo's probe."""
    target = parse_redis_url(url)
    if not target.is_sentinel:
        return redis.Redis.from_url(target.url, **options)
    creds = {k: v for k, v in (("username", target.username), ("password", target.password)) if v}
    return _master_client(target, master, creds, {"socket_timeout": SENTINEL_SOCKET_TIMEOUT},
                          options)


def _master_client(target: RedisTarget, master: str, creds: dict[str, str],
                   sentinel_options: dict[str, Any], options: dict[str, Any]) -> redis.Redis:
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        list(target.sentinels), sentinel_kwargs=sentinel_options)
    found: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
        master, connection_pool_class=FollowingPool, db=target.db, **creds, **options)
    return found


# --- Celery and RedBeat ---------------------------------------------------------------------

def _with_credentials(host: str, port: int, db: int, creds: dict[str, str]) -> str:
    auth = ""
    if creds:
        auth = quote(creds.get("username", ""), safe="") + ":" + quote(
            creds.get("password", ""), safe="") + "@"
    return f"{SENTINEL_SCHEME}://{auth}{host}:{port}/{db}"


def _plain_with_credentials(settings: Settings, target: RedisTarget) -> str:
    """The plain URL, with ``REDIS_USERNAME``/``REDIS_PASSWORD`` in it when they are set."""
    if not (settings.redis_username or settings.redis_password) or target.url.startswith("unix"):
        return target.url
    parts = urlsplit(target.url)
    creds = _credentials(settings, target)
    auth = quote(creds.get("username", ""), safe="") + ":" + quote(
        creds.get("password", ""), safe="") + "@"
    host = parts.hostname or ""
    netloc = auth + host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def celery_urls(settings: Settings) -> tuple[str, dict[str, Any]]:
    """The broker (and result backend) URL and the transport options Sentinel adds.

    For Sentinel, kombu's sentinel transport and Celery's sentinel result backend take the
    master's credentials from the URL and the sentinels' from ``sentinel_kwargs``.
    """
    target = settings.redis_target
    if not target.is_sentinel:
        return _plain_with_credentials(settings, target), {}
    creds = _credentials(settings, target)
    url = ";".join(_with_credentials(h, p, target.db, creds) for h, p in target.sentinels)
    sentinel = sentinel_kwargs(settings)
    sentinel.pop("socket_connect_timeout", None)
    return url, {"master_name": settings.redis_sentinel_master, "sentinel_kwargs": sentinel}


def redbeat_options(settings: Settings) -> dict[str, Any]:
    """``redbeat_redis_url`` and ``redbeat_redis_options`` for the same Redis."""
    target = settings.redis_target
    if not target.is_sentinel:
        return {"redbeat_redis_url": _plain_with_credentials(settings, target)}
    creds = _credentials(settings, target)
    return {
        "redbeat_redis_url": "redis-sentinel://",  # RedBeat's spelling: the sentinels follow
        "redbeat_redis_options": {
            "sentinels": [list(s) for s in target.sentinels],
            "service_name": settings.redis_sentinel_master,
            "db": target.db,
            "socket_timeout": 10,
            "sentinel_kwargs": sentinel_kwargs(settings),
            **creds,
        },
    }


# --- What an acknowledgement promises -------------------------------------------------------

class NotReplicated(Exception):
    """What was just published is not (yet) known to be on enough replicas."""


def wait_replicas(settings: Settings) -> int:
    """Replicas that must hold a write before it is acknowledged (``REDIS_WAIT_REPLICAS``;
    by default 1 for a Sentinel deployment, 0 for one Redis)."""
    if settings.redis_wait_replicas is not None:
        return settings.redis_wait_replicas
    return 1 if settings.redis_target.is_sentinel else 0


def confirm_replicated(redis_client: redis.Redis, settings: Settings,
                       generation: int | None = None) -> int:
    """After a publish: raise :class:`NotReplicated` unless ``wait_replicas`` replicas hold it.

    ``generation`` is :func:`master_generation` taken before the publish; a different one
    now means the master changed in between. Returns the replicas that acknowledged (0 when
    none are asked for: nothing is sent then).
    """
    needed = wait_replicas(settings)
    if needed == 0:
        return 0
    timeout_ms = settings.redis_wait_timeout_ms
    pipe = redis_client.pipeline(transaction=False)
    # a write of our own on this connection, after the publish: WAIT counts up to its offset
    pipe.set(replication_fence_key(settings.key_prefix), "1", px=60_000)
    pipe.execute_command("WAIT", needed, timeout_ms)  # type: ignore[no-untyped-call]
    try:
        _, acked = pipe.execute()
    except redis.RedisError as exc:
        raise NotReplicated(f"could not confirm replication ({type(exc).__name__})") from None
    if generation is not None and master_generation(redis_client) != generation:
        raise NotReplicated("the Redis master changed while publishing")
    if int(acked) < needed:
        raise NotReplicated(
            f"{int(acked)} of {needed} replica(s) acknowledged within {timeout_ms} ms")
    return int(acked)


class Replicated:
    """``confirm_replicated`` for a stream of publishes on one client (a backfill run).

    :meth:`confirm` checks everything published since the last confirmation (or since this
    object was made) and that the master stayed the same meanwhile.
    """

    def __init__(self, redis_client: redis.Redis, settings: Settings) -> None:
        self.redis, self.settings = redis_client, settings
        self.generation = master_generation(redis_client)

    def confirm(self) -> int:
        try:
            return confirm_replicated(self.redis, self.settings, self.generation)
        finally:
            self.generation = master_generation(self.redis)
