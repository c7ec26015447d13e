"""Lytics' segment scan API on the sandbox: ``_next`` paging, auth, limits, loading."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from sandbox.server import SandboxServer, running_sandbox
from tests.conftest import free_port

MEMBERS = [{"email": f"l{i}@example.com", "_uid": f"u{i}", "first_name": f"L{i}"}
           for i in range(5)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxServer]:
    directory = tmp_path_factory.mktemp("lytics")
    (directory / "vip_buyers.jsonl").write_text("\n".join(json.dumps(m) for m in MEMBERS))
    with running_sandbox(port=free_port(), profile="fast", lytics_members=directory) as sb:
        yield sb


def _scan(server: SandboxServer, segment: str, token: str | None = "tok",
          **params: Any) -> requests.Response:
    headers = {"Authorization": token} if token is not None else {}
    return requests.get(f"{server.url}/api/segment/{segment}/scan", params=params,
                        headers=headers, timeout=10)


def test_scan_pages_with_next_until_empty(server: SandboxServer) -> None:
    seen: list[dict[str, Any]] = []
    start: str | None = None
    pages = 0
    while True:
        params = {"limit": 2, **({"start": start} if start else {})}
        page = _scan(server, "vip_buyers", **params).json()
        assert (page["status"], page["message"], page["total"]) == (200, "success", 5)
        seen += page["data"]
        pages += 1
        start = page["_next"]
        if not start:
            break
    assert pages == 3
    assert [m["email"] for m in seen] == [m["email"] for m in MEMBERS]
    assert all(m["segments"] == ["vip_buyers"] for m in seen)


def test_scan_fields_limit_and_errors(server: SandboxServer) -> None:
    page = _scan(server, "vip_buyers", limit=100, fields="email,segments").json()
    assert page["data"][0] == {"email": "l0@example.com", "segments": ["vip_buyers"]}
    assert page["_next"] == ""
    assert _scan(server, "vip_buyers", limit=101).status_code == 400
    assert _scan(server, "vip_buyers", start="garbage!").status_code == 400
    missing = _scan(server, "no_such_segment")
    assert missing.status_code == 404 and missing.json()["status"] == 404


@pytest.mark.parametrize("token", [None, "", "Bearer tok"])
def test_scan_wants_a_bare_token(server: SandboxServer, token: str | None) -> None:
    assert _scan(server, "vip_buyers", token=token).status_code == 401


def test_scan_accepts_access_token_query_parameter(server: SandboxServer) -> None:
    assert _scan(server, "vip_buyers", token=None, access_token="tok").status_code == 200


def test_segments_load_over_http_as_array_or_json_lines(server: SandboxServer) -> None:
    url = f"{server.url}/_sandbox/lytics/segments/churners"
    loaded = requests.post(url, json=[{"email": "a@example.com"}], timeout=10)
    assert loaded.json() == {"segment": "churners", "total": 1}
    lines = b'{"email": "b@example.com", "segments": ["churners", "all"]}\n{"email": "c@x.io"}\n'
    assert requests.post(url, data=lines, timeout=10).json()["total"] == 2
    page = _scan(server, "churners").json()
    assert [m["email"] for m in page["data"]] == ["b@example.com", "c@x.io"]
    assert page["data"][0]["segments"] == ["churners", "all"]


def test_a_configured_token_must_match(tmp_path: Path) -> None:
    with running_sandbox(port=free_port(), profile="fast", lytics_token="s3cret") as sb:
        sb.load_segment("seg", [{"email": "a@example.com"}])
        assert _scan(sb, "seg", token="other").status_code == 401
        assert _scan(sb, "seg", token="s3cret").status_code == 200


def test_faults_reach_the_scan_only_when_named(server: SandboxServer) -> None:
    try:
        server.set_faults(error_rate=1.0, statuses=[503])
        assert _scan(server, "vip_buyers").status_code == 200
        server.set_faults(error_rate=1.0, statuses=[503], only_operations=["lytics_segment_scan"])
        assert _scan(server, "vip_buyers").status_code == 503
    finally:
        server.clear_faults()
