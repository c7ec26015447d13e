"""kombu's Redis and Sentinel transports, made to survive a Redis restart or a failover
(``broker_transport`` points here).

Why this exists (kombu 5.7.0, celery 5.7.0; no release fixes it): when the broker connection
drops while a task is unacknowledged (``task_acks_late``), the worker's consumer
``collect()``-s the broken connection and then ``close()``-s it. The first close of the
default channel drains the pending ``BRPOP`` on the dead socket; that read raises
``ConnectionError`` *before* the channel is marked closed, so the channel stays half open.
``collect()`` then detaches the transport from its connection (``transport.client = None``),
and the second close, finding the channel still open, restores the unacked messages through
a fresh pool built from ``transport.client.hostname``: ``AttributeError: 'NoneType' object
has no attribute 'hostname'``. Celery only tolerates connection errors on that path, so the
worker stops with "Unrecoverable error". Late acks of tasks that ran across the outage reach
the same dead channel the same way.

Two small changes close the hole:

- :meth:`Channel.close` finishes closing even when draining the pending ``BRPOP`` fails,
  so the channel is closed (and its unacked messages restored, if Redis is back) on the
  first try;
- a channel whose transport was detached raises ``redis.ConnectionError`` instead of
  ``AttributeError``, the error class every kombu and Celery teardown path expects.

Messages left unacknowledged are never lost either way: they stay in Redis's ``unacked``
hash and come back after the visibility timeout.

A Sentinel failover is the same event seen from the worker (the master's socket dies, or
answers ``READONLY`` once demoted, which redis-py turns into a ``ConnectionError``), so
:class:`SentinelTransport` carries the same fix over kombu's ``SentinelChannel``; its pools
ask the sentinels for the master on every new connection, so the reconnect finds the new one.
"""

from __future__ import annotations

from typing import Any

import redis
from kombu.transport import redis as kombu_redis


class BrokerGone(redis.ConnectionError):
    """The channel's connection was already torn down: there is no broker to talk to."""


class _SurvivingClose(kombu_redis.Channel):
    """What both channels share: a ``close`` that survives a dead socket."""

    def close(self) -> None:
        try:
            super().close()  # type: ignore[no-untyped-call]
        except self.connection_errors:
            if self.closed:
                raise  # closed; only restoring unacked messages failed: Redis is still away
            # draining the pending BRPOP failed on the dead socket (kombu has already
            # forgotten it): close again, without it
            super().close()  # type: ignore[no-untyped-call]

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        transport = self.connection
        if transport is None or transport.client is None:
            raise BrokerGone("the broker connection of this channel is closed")
        params: dict[str, Any] = super()._connparams(  # type: ignore[no-untyped-call]
            asynchronous=asynchronous
        )
        return params


class Channel(_SurvivingClose):
    """A Redis channel whose ``close`` survives a dead socket."""


class SentinelChannel(_SurvivingClose, kombu_redis.SentinelChannel):
    """kombu's Sentinel channel with the same ``close``."""


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with :class:`Channel`."""

    Channel = Channel


class SentinelTransport(kombu_redis.SentinelTransport):
    """kombu's Sentinel transport with :class:`SentinelChannel`."""

    Channel = SentinelChannel


TRANSPORT = f"{__name__}:Transport"
SENTINEL_TRANSPORT = f"{__name__}:SentinelTransport"
