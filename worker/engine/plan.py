"""Decide, per claimed user, what Klaviyo must be told. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from worker.engine.normalize import klaviyo_attributes
from worker.state.codes import APPLIED_IN, APPLIED_TRY, APPLIED_WAIT, FORGET, applied_code
from worker.state.desired import Desired


@dataclass
class Plan:
    """Users grouped by the Klaviyo call that brings them to their desired state."""

    join: list[Desired] = field(default_factory=list)  # subscribe or force-add
    refresh: list[Desired] = field(default_factory=list)  # still members, newer fields
    leave: list[Desired] = field(default_factory=list)  # remove from the list
    kept: list[Desired] = field(default_factory=list)  # left, but an add-only job keeps them
    unchanged: list[tuple[str, str]] = field(default_factory=list)  # release as is

    def released_as_is(self) -> list[tuple[str, str]]:
        """Users nothing is sent for: their claim is dropped and ``applied`` stays."""
        return [*self.unchanged, *((u.email, FORGET) for u in self.kept)]


def make_plan(users: Sequence[Desired], *, removes_on_exit: bool = True) -> Plan:
    """Compare each user's desired state with what Klaviyo was last told.

    A user who left every selected audience is removed, unless the job is add-only
    (``removes_on_exit`` False, ``on_exit = "keep"``): then nothing is sent and ``applied``
    keeps saying what Klaviyo holds, so the user stays counted in ``added`` and not in
    ``removed``, and a re-enter finds them still a member (only newer fields are sent).
    A user awaiting confirmation (double opt-in) is never subscribed again: only newer fields.
    """
    plan = Plan()
    for user in users:
        if user.member and not user.accepted:
            plan.join.append(user)
        elif user.member and user.fields_ts > user.applied_fields_ts:
            plan.refresh.append(user)
        elif not user.member and not user.applied_out:
            (plan.leave if removes_on_exit else plan.kept).append(user)
        else:
            plan.unchanged.append((user.email, FORGET))
    return plan


def applied_in(user: Desired) -> str:
    """The ``applied`` value that records a member with these fields."""
    return applied_code(APPLIED_IN, user.fields_ts)


def applied_wait(user: Desired) -> str:
    """The ``applied`` value of a user subscribed to a double opt-in list, not confirmed."""
    return applied_code(APPLIED_WAIT, user.fields_ts)


def applied_accepted(user: Desired) -> str:
    """An accepted user with newer fields: still a member, or still awaiting confirmation."""
    return applied_wait(user) if user.awaiting else applied_in(user)


def applied_try(user: Desired) -> str:
    """The ``applied`` value of a user whose subscribe is on its way (outcome unknown)."""
    return applied_code(APPLIED_TRY, user.fields_ts)


def profile_attributes(user: Desired) -> dict[str, object]:
    """The Klaviyo profile for a bulk import: email plus mapped fields (consent channels and
    dates travel with the attributes but are sent only with the subscribe)."""
    return {**klaviyo_attributes(user.attributes), "email": user.email}


def has_profile_fields(user: Desired) -> bool:
    """True when the user carries fields a bulk import would write (not only consent)."""
    return bool(klaviyo_attributes(user.attributes))
