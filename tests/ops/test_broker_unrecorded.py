"""A message popped off its queue just as Redis dies is put back, not lost.

kombu's consumer pops a message (``BRPOP``) and records it as unacknowledged in a second
round trip; Redis killed in between keeps the pop (append-only file) and never saw the
recording. Here the pop is real and Redis is killed (SIGKILL) right after it, before the
recording: the message must be on its queue again once Redis is back.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis
from kombu import Connection, Exchange, Queue

from tests.conftest import RedisServer
from worker.ops import broker

QUEUE = Queue("unrecorded", Exchange("unrecorded"), routing_key="unrecorded")


def _connection(url: str) -> Connection:
    return Connection(url, transport=broker.Transport, transport_options={"max_retries": 0})


def test_a_message_popped_as_redis_dies_is_put_back_at_its_queue(
        aof_redis: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    with _connection(aof_redis.url) as conn:
        conn.Producer().publish({"n": 1}, exchange=QUEUE.exchange, routing_key="unrecorded",
                                declare=[QUEUE])
        channel = conn.channel()
        pop = channel._get

        def pop_then_redis_dies(queue: str, **kwargs: Any) -> Any:
            message = pop(queue, **kwargs)  # gone from Redis for good (append-only file)
            aof_redis.kill()
            return message

        monkeypatch.setattr(channel, "_get", pop_then_redis_dies)
        with pytest.raises(redis.ConnectionError):
            channel.basic_get("unrecorded")
        assert len(broker.UNRECORDED) == 1
    aof_redis.start()
    with _connection(aof_redis.url) as conn:
        queue = conn.SimpleQueue(QUEUE)  # its channel puts the message back first
        message = queue.get(timeout=5)
        assert message.payload == {"n": 1}
        message.ack()
        queue.close()
    assert len(broker.UNRECORDED) == 0
