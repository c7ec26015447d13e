"""A small HTTP client for the sandbox, for tests and demos (not a Klaviyo client).

    with running_sandbox(profile="fast", job_delay=0.05) as sb:
        api = SandboxClient(sb.url, "pk_test_a")
        list_id = api.create_list("VIP")
        job = api.wait_subscribe(api.subscribe(list_id, ["ann@example.com"]))
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import requests

REVISION = "2026-07-15"
JSON_API = "application/vnd.api+json"


def profiles_payload(emails: list[str], **attributes: Any) -> list[dict[str, Any]]:
    """Subscribe-job profiles (email marketing consent) for ``emails``."""
    marketing = {"email": {"marketing": {"consent": "SUBSCRIBED"}}}
    return [{"type": "profile", "attributes": {"email": e, "subscriptions": marketing,
                                               **attributes}} for e in emails]


class SandboxClient:
    """Raw Klaviyo calls with the right headers, plus ``/_sandbox/`` admin calls."""

    def __init__(self, base_url: str, api_key: str = "pk_test_sandbox",
                 revision: str | None = REVISION, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.headers = {"Authorization": f"Klaviyo-API-Key {api_key}", "Accept": JSON_API,
                        "Content-Type": JSON_API}
        if revision is not None:
            self.headers["revision"] = revision
        self.timeout = timeout

    def call(self, method: str, path: str, body: Any = None,
             headers: dict[str, str] | None = None, **params: Any) -> requests.Response:
        """One Klaviyo API call (``path`` under the base URL, or an absolute URL)."""
        url = path if path.startswith("http") else f"{self.base_url}{path}"
        data = orjson.dumps(body) if body is not None else None
        return self.session.request(method, url, data=data, params=params or None,
                                    headers={**self.headers, **(headers or {})},
                                    timeout=self.timeout)

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        """A ``/_sandbox/`` call; returns the JSON (or None)."""
        resp = self.session.request(method, f"{self.base_url}/_sandbox/{path}",
                                    data=orjson.dumps(body) if body is not None else None,
                                    timeout=self.timeout)
        resp.raise_for_status()
        return resp.json() if resp.content else None

    def create_list(self, name: str, opt_in: str | None = None) -> str:
        """A new list's id."""
        attributes: dict[str, Any] = {"name": name}
        if opt_in is not None:
            attributes["opt_in_process"] = opt_in
        resp = self.call("POST", "/api/lists", {"data": {"type": "list", "attributes": attributes}})
        resp.raise_for_status()
        return str(resp.json()["data"]["id"])

    def subscribe(self, list_id: str | None, emails: list[str], *,
                  profiles: list[dict[str, Any]] | None = None, **attributes: Any) -> str:
        """Post a subscribe job; returns its id (from ``X-Sandbox-Job-Id``)."""
        data: dict[str, Any] = {"type": "profile-subscription-bulk-create-job", "attributes": {
            "profiles": {"data": profiles if profiles is not None else profiles_payload(emails)},
            **attributes}}
        if list_id is not None:
            data["relationships"] = {"list": {"data": {"type": "list", "id": list_id}}}
        resp = self.call("POST", "/api/profile-subscription-bulk-create-jobs", {"data": data})
        if resp.status_code != 202:
            raise AssertionError(f"subscribe: HTTP {resp.status_code}: {resp.text[:500]}")
        return resp.headers["X-Sandbox-Job-Id"]

    def wait_subscribe(self, job_id: str, timeout: float = 10.0) -> dict[str, Any]:
        """The subscribe job once complete."""
        deadline = time.monotonic() + timeout
        while True:
            job: dict[str, Any] = self.admin("GET", f"subscribe-jobs/{job_id}")
            if job["status"] == "complete" or time.monotonic() > deadline:
                return job
            time.sleep(0.02)

    def unsubscribe(self, list_id: str | None, emails: list[str]) -> str:
        """Post a bulk unsubscribe job (``bulk_unsubscribe_profiles``, as a preference page
        would: global for whoever is not on ``list_id``); returns its id."""
        data: dict[str, Any] = {"type": "profile-subscription-bulk-delete-job", "attributes": {
            "profiles": {"data": [{"type": "profile", "attributes": {"email": e, "subscriptions": {
                "email": {"marketing": {"consent": "UNSUBSCRIBED"}}}}} for e in emails]}}}
        if list_id is not None:
            data["relationships"] = {"list": {"data": {"type": "list", "id": list_id}}}
        resp = self.call("POST", "/api/profile-subscription-bulk-delete-jobs", {"data": data})
        if resp.status_code != 202:
            raise AssertionError(f"unsubscribe: HTTP {resp.status_code}: {resp.text[:500]}")
        return resp.headers["X-Sandbox-Job-Id"]

    def bulk_import(self, profiles: list[dict[str, Any]],
                    list_ids: tuple[str, ...] = ()) -> str:
        """Post a bulk import job; returns its id."""
        data: dict[str, Any] = {"type": "profile-bulk-import-job",
                                "attributes": {"profiles": {"data": profiles}}}
        if list_ids:
            data["relationships"] = {"lists": {"data": [{"type": "list", "id": i}
                                                        for i in list_ids]}}
        resp = self.call("POST", "/api/profile-bulk-import-jobs", {"data": data})
        if resp.status_code != 202:
            raise AssertionError(f"bulk import: HTTP {resp.status_code}: {resp.text[:500]}")
        return str(resp.json()["data"]["id"])

    def wait_import(self, job_id: str, timeout: float = 10.0) -> dict[str, Any]:
        """The bulk import job's attributes once complete."""
        deadline = time.monotonic() + timeout
        while True:
            resp = self.call("GET", f"/api/profile-bulk-import-jobs/{job_id}")
            resp.raise_for_status()
            attributes: dict[str, Any] = resp.json()["data"]["attributes"]
            if attributes["status"] == "complete" or time.monotonic() > deadline:
                return attributes
            time.sleep(0.05)

    def list_emails(self, list_id: str) -> list[str]:
        """Every member email (admin route)."""
        return list(self.admin("GET", f"lists/{list_id}/emails")["emails"])
