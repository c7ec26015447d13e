"""The two ways other tools export an audience, run on a sample and extrapolated.

(a) one call per user through Klaviyo's official SDK (``klaviyo-api``): profile-import,
    then a subscribe job holding that one profile; the SDK's own retry loop (which
    sleeps with exponential back-off) is disabled and a 429's ``Retry-After`` is honoured.
(b) subscribe jobs of 100 profiles (what Segment and RudderStack send), direct HTTP,
    honouring ``Retry-After``.

Both start on a minute boundary so their sample covers whole fixed windows; the
sustained rate is what the first whole minute delivered, which every later minute repeats.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import requests
from klaviyo_api import KlaviyoAPI
from openapi_client.exceptions import ApiException

from bench.stack import REVISION, Sandbox


@dataclass
class SampleResult:
    profiles: int = 0
    started: float = 0.0
    finished: float = 0.0
    first_minute: int = 0  # profiles done in the first 60 s (the sustained rate per minute)
    throttled: int = 0  # 429s seen by the client
    done_at: list[float] = field(default_factory=list)

    def mark(self, count: int) -> None:
        now = time.time()
        self.profiles += count
        if now < self.started + 60:
            self.first_minute += count


def wait_for_minute() -> float:
    """Sleep until the next minute window opens; return its start (epoch seconds)."""
    now = time.time()
    boundary = (int(now) // 60 + 1) * 60
    time.sleep(max(0.0, boundary - now) + 0.01)
    return float(boundary)


def sdk_client(sandbox: Sandbox, key: str) -> Any:
    """The official SDK pointed at the sandbox: ``test_host``, no retries, our revision."""
    client = KlaviyoAPI(key, max_delay=0, max_retries=0, test_host=sandbox.url)
    # The SDK pins its own newer revision; ask for the one this project and the sandbox speak.
    client.api_client.default_headers["revision"] = REVISION
    return client


def run_sdk(sandbox: Sandbox, key: str, list_id: str, users: int, start: float) -> SampleResult:
    """(a): for each user, profile-import then a one-profile subscribe job, via the SDK."""
    client = sdk_client(sandbox, key)
    out = SampleResult(started=start)

    def call(fn: Any, body: dict[str, Any]) -> None:
        while True:
            try:
                fn(body)
                return
            except ApiException as exc:
                if exc.status != 429:
                    raise
                out.throttled += 1
                headers = exc.headers or {}
                time.sleep(float(headers.get("Retry-After", 1)))

    for i in range(users):
        email = f"sdk{i}@bench.example"
        call(
            client.Profiles.create_or_update_profile,
            {"data": {"type": "profile", "attributes": {"email": email, "first_name": f"S{i}"}}},
        )
        call(client.Profiles.bulk_subscribe_profiles, subscribe_body(list_id, [email]))
        out.mark(1)
    out.finished = time.time()
    return out


def subscribe_body(list_id: str, emails: list[str]) -> dict[str, Any]:
    marketing = {"email": {"marketing": {"consent": "SUBSCRIBED"}}}
    profiles = [
        {"type": "profile", "attributes": {"email": e, "subscriptions": marketing}} for e in emails
    ]
    return {
        "data": {
            "type": "profile-subscription-bulk-create-job",
            "attributes": {"profiles": {"data": profiles}},
            "relationships": {"list": {"data": {"type": "list", "id": list_id}}},
        }
    }


def run_batches(
    sandbox: Sandbox, key: str, list_id: str, profiles: int, start: float, batch: int = 100
) -> SampleResult:
    """(b): subscribe jobs of ``batch`` profiles in a simple loop, honouring 429 ``Retry-After``."""
    session = requests.Session()
    session.headers.update(sandbox.headers(key))
    url = f"{sandbox.url}/api/profile-subscription-bulk-create-jobs"
    out = SampleResult(started=start)
    for first in range(0, profiles, batch):
        emails = [f"b100-{i}@bench.example" for i in range(first, min(first + batch, profiles))]
        data = orjson.dumps(subscribe_body(list_id, emails))
        while True:
            resp = session.post(url, data=data, timeout=30)
            if resp.status_code != 429:
                resp.raise_for_status()
                break
            out.throttled += 1
            time.sleep(float(resp.headers.get("Retry-After", "1")))
        out.mark(len(emails))
    out.finished = time.time()
    return out


def check_revision_header(sandbox: Sandbox, key: str) -> None:
    """Fail early if the SDK cannot talk to the sandbox (host, auth, revision)."""
    client = sdk_client(sandbox, key)
    client.Lists.get_lists()


def list_count(sandbox: Sandbox, key: str, list_id: str) -> int:
    resp = requests.get(
        f"{sandbox.url}/api/lists/{list_id}",
        params={"additional-fields[list]": "profile_count"},
        headers=sandbox.headers(key),
        timeout=30,
    )
    resp.raise_for_status()
    return int(resp.json()["data"]["attributes"]["profile_count"])
