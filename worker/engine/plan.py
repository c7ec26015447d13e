"""Decide, per claimed user, what Klaviyo must be told. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from worker.state.codes import APPLIED_IN, APPLIED_TRY, FORGET, applied_code
from worker.state.desired import Desired


@dataclass
class Plan:
    """Users grouped by the Klaviyo call that brings them to their desired state."""

    join: list[Desired] = field(default_factory=list)  # subscribe or force-add
    refresh: list[Desired] = field(default_factory=list)  # still members, newer fields
    leave: list[Desired] = field(default_factory=list)  # remove from the list
    unchanged: list[tuple[str, str]] = field(default_factory=list)  # release as is


def make_plan(users: Sequence[Desired]) -> Plan:
    """Compare each user's desired state with what Klaviyo was last told."""
    plan = Plan()
    for user in users:
        if user.member and not user.applied_in:
            plan.join.append(user)
        elif user.member and user.fields_ts > user.applied_fields_ts:
            plan.refresh.append(user)
        elif not user.member and not user.applied_out:
            plan.leave.append(user)
        else:
            plan.unchanged.append((user.email, FORGET))
    return plan


def applied_in(user: Desired) -> str:
    """The ``applied`` value that records a member with these fields."""
    return applied_code(APPLIED_IN, user.fields_ts)


def applied_try(user: Desired) -> str:
    """The ``applied`` value of a user whose subscribe is on its way (outcome unknown)."""
    return applied_code(APPLIED_TRY, user.fields_ts)


def profile_attributes(user: Desired) -> dict[str, object]:
    """The Klaviyo profile for a bulk import: email plus mapped fields."""
    return {**user.attributes, "email": user.email}
