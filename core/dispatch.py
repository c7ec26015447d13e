"""How producers hand events to the engine: one Celery message per action and body.

``send_events`` groups a body's events by action and publishes one
``audience.enter`` / ``audience.exit`` / ``audience.change`` message each. The
displayed arguments (Flower, logs) carry counts, never emails. Publishing raises
on a broker failure: the caller answers 503 and Lytics sends the body again,
which is harmless because recording desired state is idempotent.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from celery import Celery

from core import names
from core.events import Action, AudienceEvent

TASK_FOR_ACTION = {
    Action.ENTER: names.AUDIENCE_ENTER,
    Action.EXIT: names.AUDIENCE_EXIT,
    Action.CHANGE: names.AUDIENCE_CHANGE,
}


def masked_args(job_id: str, count: int) -> str:
    """What Flower and the logs show instead of the people in a message."""
    return f"({job_id!r}, <{count} events>)"


def send_events(app: Celery, job_id: str, events: Sequence[AudienceEvent]) -> int:
    """Publish ``events`` for ``job_id`` to the realtime queue; return messages sent."""
    by_action: dict[Action, list[dict[str, object]]] = defaultdict(list)
    for event in events:
        by_action[event.action].append(event.to_wire())
    for action, wires in by_action.items():
        app.send_task(
            TASK_FOR_ACTION[action],
            args=(job_id, wires),
            queue=names.REALTIME,
            argsrepr=masked_args(job_id, len(wires)),
            kwargsrepr="{}",
            ignore_result=True,
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.1, "interval_step": 0.2},
        )
    return len(by_action)
