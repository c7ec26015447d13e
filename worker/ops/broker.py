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

A third hole loses a message outright: kombu's consumer takes a message off its queue
(``BRPOP``) and only then, in a second round trip, records it as unacknowledged. A Redis that
dies between the two (kill -9, a failover) has popped the message, durably, and never
recorded it: it is in no queue and in no ``unacked`` hash, only in the worker's memory
(the fault suite lost a batch of enters so, once in a few runs). :class:`RecordingQoS`
keeps such a message in the process (:data:`UNRECORDED`) and every channel opened afterwards
puts what is kept back at the head of its queue, first thing. A message whose recording did
reach Redis although the reply was lost comes back twice: every task is safe to run again.

Live first in the worker too: kombu's default queue order is round robin, so a worker that
consumes realtime and backfill (one pool, as deployed) takes every other message from the
backfill while both queues hold some. A backfill's chunks take a process for a second or so
each; live enters arriving at 10 bodies a second then waited in their queue for tens of
seconds behind them (the benchmark's live probe during a backfill: p50 15.6 s against 3.3 s
without). :class:`LiveFirst` always asks for realtime first, then maintenance, then
backfill: the backfill takes the processes live traffic leaves, as it takes the rate
limiter's windows.

A Sentinel failover is the same event seen from the worker (the master's socket dies, or
answers ``READONLY`` once demoted, which redis-py turns into a ``ConnectionError``), so
:class:`SentinelTransport` carries the same fix over kombu's ``SentinelChannel``; its pools
ask the sentinels for the master on every new connection, so the reconnect finds the new one.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import redis
from kombu.transport import redis as kombu_redis
from kombu.utils.scheduling import priority_cycle

from core import names

log = logging.getLogger(__name__)


class BrokerGone(redis.ConnectionError):
    """The channel's connection was already torn down: there is no broker to talk to."""


class Unrecorded:
    """Messages taken off a queue whose recording as unacknowledged failed: put back later."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: list[tuple[dict[str, Any], str, str]] = []

    def keep(self, payload: dict[str, Any], exchange: str, routing_key: str) -> None:
        with self._lock:
            self._kept.append((payload, exchange, routing_key))

    def __len__(self) -> int:
        return len(self._kept)

    def put_back(self, channel: kombu_redis.Channel) -> int:
        """Requeue what is kept at the head of its queue; kept still if Redis is away."""
        with self._lock:
            kept, self._kept = self._kept, []
        if not kept:
            return 0
        try:
            with channel.conn_or_acquire() as client:
                pipe = client.pipeline()
                for payload, exchange, routing_key in kept:
                    restore = channel._do_restore_message
                    restore(payload, exchange, routing_key, pipe)  # type: ignore[no-untyped-call]
                pipe.execute()
        except channel.connection_errors:
            with self._lock:
                self._kept[:0] = kept
            return 0
        log.warning("put back %d message(s) taken off a queue as Redis went away", len(kept))
        return len(kept)


UNRECORDED = Unrecorded()  # one per process: the channel that lost them is gone by then


class RecordingQoS(kombu_redis.QoS):
    """kombu's QoS, keeping a message whose recording as unacknowledged failed."""

    def append(self, message: Any, delivery_tag: str) -> None:
        try:
            super().append(message, delivery_tag)  # type: ignore[no-untyped-call]
        except self.channel.connection_errors:
            delivery = message.delivery_info
            UNRECORDED.keep(message._raw, delivery["exchange"], delivery["routing_key"])
            raise


# the order a worker asks its queues for a message: whatever a backfill leaves waits last
LIVE_FIRST = (names.REALTIME, names.MAINTENANCE, names.BACKFILL)


class LiveFirst(priority_cycle):
    """The channel's queues in :data:`LIVE_FIRST` order, always (kombu's ``BRPOP`` pops from
    the first non-empty one); a queue of another name comes before the backfill."""

    def __init__(self) -> None:
        super().__init__([])  # type: ignore[no-untyped-call]

    def update(self, it: Any) -> None:
        self.items[:] = sorted(it, key=_rank)


def _rank(queue: str) -> int:
    """A queue's place; names may carry a prefix (``kae.realtime``)."""
    for rank, name in enumerate(LIVE_FIRST):
        if queue == name or queue.endswith(f".{name}"):
            return rank
    return LIVE_FIRST.index(names.BACKFILL) - 1


class _SurvivingClose(kombu_redis.Channel):
    """What both channels share: a ``close`` that survives a dead socket, messages lost
    between a pop and its recording put back, and live queues asked first."""

    QoS = RecordingQoS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self._queue_cycle = LiveFirst()
        self._update_queue_cycle()  # type: ignore[no-untyped-call]
        if self.ack_emulation:
            UNRECORDED.put_back(self)

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
