"""``klaviyo-export explain JOB EMAIL [--json]``: one person's story, from every source.

For "why isn't ann@ in the list?": the desired state per audience with event times, what
Klaviyo was last told and when, where the engine has them now, their dead letters, consent
and suppressions as Klaviyo has them, and their membership read live from Klaviyo
(:mod:`worker.engine.explain`). The email is the operator's own input, so it is shown.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from console.cli import UserError
from console.commands.start import job_with_list
from worker import runtime
from worker.engine.explain import explain
from worker.klaviyo.errors import KlaviyoError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("explain", help="one person's story: desired, told, Klaviyo's view")
    parser.add_argument("job", metavar="JOB", help="the export job's id")
    parser.add_argument("email", metavar="EMAIL", help="the person's email address")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=run)


def describe(story: dict[str, Any]) -> str:
    """The story as lines for people."""
    lines = [f"{story['email']} in job {story['job']} (list {story['list_id']}): "
             f"{story['verdict']}"]
    for audience, mark in story["audiences"].items():
        note = "" if mark["selected"] else " (not one of the job's audiences)"
        lines.append(f"  audience {audience}: {mark['event']} at {mark['at']}{note}")
    if not story["audiences"]:
        lines.append("  audiences: no event recorded for this email")
    told = story["told"]
    lines.append(f"  Klaviyo was last told: {told['words']}"
                 + (f" at {told['at']}" if told["at"] else ""))
    for name, at in story["engine"].items():
        lines.append(f"  engine: {name.replace('_', ' ')} {at}")
    for letter in story["dead_letters"]:
        lines.append(f"  dead letter {letter['at']}: {letter['reason']} [{letter['source']}]"
                     + (f" {letter['detail']}" if letter["detail"] else ""))
    k = story["klaviyo"]
    if k["profile"]:
        lines.append(f"  Klaviyo profile {k['profile_id']}: consent {k['consent']}"
                     + (f" since {k['consent_at']}" if k["consent_at"] else "")
                     + (", double opt-in" if k["double_optin"] else "")
                     + f", can receive email marketing: {k['can_receive_email_marketing']}")
        for entry in [*k["suppression"], *k["list_suppressions"]]:
            where = " (this list)" if "list_id" in entry else " (global)"
            lines.append(f"  suppressed{where}: {entry.get('reason')} at {entry.get('timestamp')}")
    else:
        lines.append("  Klaviyo profile: none")
    on = story["on_list"]
    lines.append(f"  on the list now: {'yes' if on['member'] else 'no'}"
                 + (f", joined {on['joined_group_at']}" if on["joined_group_at"] else ""))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    job, state = job_with_list(args.job)
    try:
        story = explain(job, args.email, list_id=str(state.list_id),
                        opt_in_process=state.opt_in_process, client=runtime.klaviyo(job),
                        store=runtime.redis_client(), keys=runtime.job_keys(job.id))
    except ValueError as exc:
        raise UserError(str(exc)) from None
    except KlaviyoError as exc:
        raise UserError(f"job {job.id!r}: Klaviyo: {exc}") from None
    print(json.dumps(story, indent=2) if args.json else describe(story))
    return 0
