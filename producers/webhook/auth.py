"""Who may post to a job: a shared token, since Lytics does not sign webhooks (lytics.md §1.5).

Each job's token is the environment variable named by its ``webhook_token_env``
when that variable is set, else ``WEBHOOK_TOKEN``. Lytics can send it as a static
header or query parameter, so the receiver accepts it in ``Authorization`` (with or
without ``Bearer ``), in ``X-Api-Key`` or as ``?token=``, compared in constant time.

A job without any token makes the receiver refuse to start, unless the operator
passes ``--insecure-no-auth``: then such jobs accept any request (jobs that have a
token still require it).
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping

from starlette.requests import Request

from core.jobs import JobsFile
from core.settings import ConfigurationError, Settings


def job_tokens(jobs: JobsFile, settings: Settings, *, insecure_no_auth: bool = False,
               environ: Mapping[str, str] | None = None) -> dict[str, bytes | None]:
    """Each job's expected token (None: no authentication, only with ``insecure_no_auth``)."""
    env = os.environ if environ is None else environ
    shared = settings.webhook_token.get_secret_value() if settings.webhook_token else ""
    tokens: dict[str, bytes | None] = {}
    for job in jobs.jobs:
        own = env.get(job.webhook_token_env, "") if job.webhook_token_env else ""
        token = own or shared
        tokens[job.id] = token.encode() if token else None
    missing = [job_id for job_id, token in tokens.items() if token is None]
    if missing and not insecure_no_auth:
        raise ConfigurationError(
            f"no webhook token for job(s) {', '.join(missing)}: set WEBHOOK_TOKEN or the job's "
            "webhook_token_env variable (or pass --insecure-no-auth for local tests)"
        )
    return tokens


def shared_token(settings: Settings) -> bytes | None:
    """``WEBHOOK_TOKEN``, the token every job without its own accepts (None when unset)."""
    value = settings.webhook_token.get_secret_value() if settings.webhook_token else ""
    return value.encode() if value else None


def presented_tokens(request: Request) -> list[str]:
    """Every token the request carries, wherever Lytics may have put it."""
    found = []
    authorization = request.headers.get("authorization")
    if authorization is not None:
        found.append(authorization)
        if authorization[:7].lower() == "bearer ":
            found.append(authorization[7:].strip())
    found.extend(v for v in (request.headers.get("x-api-key"),
                             request.query_params.get("token")) if v is not None)
    return found


def is_authorized(expected: bytes | None, request: Request) -> bool:
    """True when no token is required, or one presented token equals ``expected``."""
    if expected is None:
        return True
    matches = [hmac.compare_digest(candidate.encode(), expected)
               for candidate in presented_tokens(request)]
    return any(matches)
