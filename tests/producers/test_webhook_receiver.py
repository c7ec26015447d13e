"""Specs for the webhook receiver: auth, answers, and the Celery messages it leaves in Redis."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import orjson
import pytest
import redis
from jsonschema import Draft202012Validator
from lytics_samples import (
    TOKEN,
    TS_NS,
    VIP_SLUG,
    batch,
    body,
    cloud_event,
    queue_length,
    queued_messages,
    segment_event,
)
from starlette.testclient import TestClient

from core.jobs import ExportJob, JobsFile
from core.settings import ConfigurationError, Settings
from producers.webhook import create_app
from worker.celery_app import create_app as create_celery_app

URL = "/webhooks/lytics/vip"


class TestAuth:
    @pytest.mark.parametrize(("headers", "params"), [
        ({"Authorization": f"Bearer {TOKEN}"}, {}),
        ({"Authorization": f"bearer {TOKEN}"}, {}),
        ({"Authorization": TOKEN}, {}),
        ({"X-Api-Key": TOKEN}, {}),
        ({}, {"token": TOKEN}),
    ])
    def test_token_accepted_wherever_lytics_puts_it(
        self, client: TestClient, headers: dict[str, str], params: dict[str, str]
    ) -> None:
        """Authorization (with or without Bearer), X-Api-Key and ?token= all authenticate."""
        assert client.post(URL, json=body(), headers=headers, params=params).status_code == 202

    @pytest.mark.parametrize(("headers", "params"), [
        ({}, {}),
        ({"Authorization": "Bearer nope"}, {}),
        ({"X-Api-Key": TOKEN[:-1]}, {}),
        ({}, {"token": f"{TOKEN}x"}),
        ({"Authorization": f"Basic {TOKEN}"}, {}),
    ])
    def test_missing_or_wrong_token_is_401(self, client: TestClient, redis_client: redis.Redis,
                                           prefix: str, headers: dict[str, str],
                                           params: dict[str, str]) -> None:
        """Without the right token nothing is queued and the answer is 401."""
        answer = client.post(URL, json=body(), headers=headers, params=params)
        assert answer.status_code == 401
        assert queue_length(redis_client, prefix) == 0

    def test_job_token_replaces_the_shared_one(self, make_client: Callable[..., TestClient],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
        """A job whose webhook_token_env is set takes that token and refuses WEBHOOK_TOKEN."""
        # given
        monkeypatch.setenv("VIP_HOOK_TOKEN", "job-own-token")
        job = ExportJob(id="vip", audiences=(VIP_SLUG,), webhook_token_env="VIP_HOOK_TOKEN")
        client = make_client(jobs=(job,))
        # when / then
        shared = client.post(URL, json=body(), headers={"X-Api-Key": TOKEN})
        own = client.post(URL, json=body(), headers={"X-Api-Key": "job-own-token"})
        assert (shared.status_code, own.status_code) == (401, 202)

    @pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}])
    def test_an_unknown_job_without_a_valid_token_is_401_like_a_known_one(
            self, client: TestClient, headers: dict[str, str]) -> None:
        """The token is checked first: job ids cannot be enumerated by their 404s."""
        unknown = client.post("/webhooks/lytics/nobody", json=body(), headers=headers)
        known = client.post(URL, json=body(), headers=headers)
        assert (unknown.status_code, known.status_code) == (401, 401)
        assert unknown.json() == known.json()

    def test_any_jobs_own_token_learns_that_a_job_is_unknown(
            self, make_client: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch) -> None:
        """A caller holding a valid token (shared or a job's own) gets 404 for an unknown id."""
        monkeypatch.setenv("VIP_HOOK_TOKEN", "job-own-token")
        client = make_client(jobs=(ExportJob(id="vip", audiences=(VIP_SLUG,),
                                             webhook_token_env="VIP_HOOK_TOKEN"),))
        statuses = [client.post("/webhooks/lytics/nobody", json=body(),
                                headers={"X-Api-Key": token}).status_code
                    for token in ("job-own-token", TOKEN, "other")]
        assert statuses == [404, 404, 401]

    def test_no_token_configured_refuses_to_start(self, settings: Settings, job: ExportJob) -> None:
        """Without any token the app is not built, unless insecure_no_auth is explicit."""
        # given
        bare = settings.model_copy(update={"webhook_token": None})
        celery, client = create_celery_app(bare), redis.Redis.from_url(str(bare.redis_url))
        # when / then
        with pytest.raises(ConfigurationError, match="no webhook token for job"):
            create_app(bare, JobsFile(jobs=(job,)), celery, client)
        app = create_app(bare, JobsFile(jobs=(job,)), celery, client, insecure_no_auth=True)
        assert TestClient(app).post(URL, json=body()).status_code == 202
        celery.close()


class TestAccepted:
    def test_202_and_the_celery_message_in_redis(self, client: TestClient, auth: dict[str, str],
                                                 redis_client: redis.Redis, prefix: str) -> None:
        """An accepted body is one ``audience.enter`` message for the job, events as wire dicts."""
        # when
        answer = client.post(URL, json=body(first_name="Ann"), headers=auth)
        # then
        assert (answer.status_code, answer.json()) == (202, {"accepted": 1, "ignored": 0})
        (name, job_id, [wire]), = queued_messages(redis_client, prefix)
        assert isinstance(wire.pop("received_ns"), int)  # the receiver's clock (engine.record)
        assert (name, job_id, wire) == ("audience.enter", "vip", {
            "audience": VIP_SLUG, "action": "enter", "ts_ns": TS_NS,
            "profile": {"email": "ann@example.com", "first_name": "Ann",
                         "_uid": "a1b2c3"}})

    def test_one_message_per_action_per_body(self, client: TestClient, auth: dict[str, str],
                                             redis_client: redis.Redis, prefix: str) -> None:
        """A batch with enters, exits and changes gives three messages, one per action."""
        payload = [*batch(3), *batch(2, start=3, event="exit"),
                   body(segment_event("change", ts=None))]
        answer = client.post(URL, json=payload, headers=auth)
        assert answer.json() == {"accepted": 6, "ignored": 0}
        tasks = {task: len(events) for task, _job, events in queued_messages(redis_client, prefix)}
        assert tasks == {"audience.enter": 3, "audience.exit": 2, "audience.change": 1}

    @pytest.mark.parametrize("method", ["put", "patch"])
    def test_put_and_patch_work_like_post(self, client: TestClient, auth: dict[str, str],
                                          method: str) -> None:
        """Lytics lets the operator pick the method; PUT and PATCH are accepted too."""
        answer = client.request(method, URL, content=orjson.dumps(cloud_event()), headers=auth)
        assert answer.status_code == 202

    def test_unselected_audiences_are_acknowledged(self, client: TestClient, auth: dict[str, str],
                                                   redis_client: redis.Redis, prefix: str) -> None:
        """A body only about other audiences is 202 with everything ignored and nothing queued."""
        payload = body(segment_event(segment_id="abc", slug="someone_else"))
        answer = client.post(URL, json=payload, headers=auth)
        assert (answer.status_code, answer.json()) == (202, {"accepted": 0, "ignored": 1})
        assert queue_length(redis_client, prefix) == 0


class TestRefused:
    def test_400_names_the_problem_and_queues_nothing(self, client: TestClient,
                                                      auth: dict[str, str],
                                                      redis_client: redis.Redis,
                                                      prefix: str) -> None:
        """One bad body in a batch refuses the whole batch with a precise message."""
        payload = batch(4)
        payload[3]["data"]["segment_events"][0]["enter"] = "tomorrow"
        answer = client.post(URL, json=payload, headers=auth)
        assert answer.status_code == 400
        assert answer.json() == {
            "error": "body[3].data.segment_events[0].enter: not an RFC 3339 timestamp"}
        assert queue_length(redis_client, prefix) == 0

    def test_invalid_json_is_400(self, client: TestClient, auth: dict[str, str]) -> None:
        """Bytes that are not JSON are a 400 that says so."""
        answer = client.post(URL, content=b"{nope", headers=auth)
        assert answer.status_code == 400
        assert answer.json()["error"].startswith("body: not valid JSON")

    def test_unknown_job_is_404(self, client: TestClient, auth: dict[str, str]) -> None:
        """A job id the jobs file does not hold is a 404 (to a caller with a valid token)."""
        assert client.post("/webhooks/lytics/nobody", json=body(), headers=auth).status_code == 404

    def test_too_large_by_content_length_is_413(self, make_client: Callable[..., TestClient],
                                                auth: dict[str, str]) -> None:
        """A declared Content-Length over the limit is refused before reading."""
        client = make_client(webhook_max_body_bytes=2048)
        answer = client.post(URL, content=b" " * 2049, headers=auth)
        assert answer.status_code == 413

    def test_too_large_while_streaming_is_413(self, make_client: Callable[..., TestClient],
                                              auth: dict[str, str]) -> None:
        """A chunked body without Content-Length is counted while it is read."""
        client = make_client(webhook_max_body_bytes=2048)
        chunks = (b" " * 1000 for _ in range(3))
        answer = client.post(URL, content=chunks, headers=auth)
        assert "content-length" not in {k.lower() for k in answer.request.headers}
        assert answer.status_code == 413

    def test_deep_queue_is_503_with_retry_after(self, make_client: Callable[..., TestClient],
                                                auth: dict[str, str], redis_client: redis.Redis,
                                                prefix: str) -> None:
        """Past webhook_max_queue_depth the receiver asks Lytics to come back later."""
        # given: two queued messages
        make_client().post(URL, json=[*batch(1), *batch(1, start=1, event="exit")], headers=auth)
        assert queue_length(redis_client, prefix) == 2
        # when: a receiver allowing one message gets a body
        answer = make_client(webhook_max_queue_depth=1).post(URL, json=body(), headers=auth)
        # then
        assert answer.status_code == 503
        assert int(answer.headers["retry-after"]) > 0
        assert queue_length(redis_client, prefix) == 2


class TestProbesAndDocs:
    def test_healthz_and_readyz(self, client: TestClient) -> None:
        """healthz says alive; readyz says ready when Redis answers."""
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").json() == {"status": "ready", "jobs": 1}

    def test_readyz_503_when_redis_is_unreachable(self, make_client: Callable[..., TestClient],
                                                  free_tcp_port: int) -> None:
        """Without Redis the receiver is not ready."""
        client = make_client(redis_url=f"redis://127.0.0.1:{free_tcp_port}/0")
        answer = client.get("/readyz")
        assert answer.status_code == 503
        assert "retry-after" in answer.headers

    def test_openapi_describes_the_endpoint_and_its_bodies(self, client: TestClient) -> None:
        """The hand-written document lists every method, status and auth, and its schema
        accepts the bodies the receiver accepts."""
        doc = client.get("/openapi.json").json()
        operation = doc["paths"]["/webhooks/lytics/{job_id}"]["post"]
        assert set(operation["responses"]) == {"202", "400", "401", "404", "413", "503"}
        assert set(doc["paths"]["/webhooks/lytics/{job_id}"]) == {"post", "put", "patch"}
        assert {"bearer", "apiKey", "queryToken"} <= set(doc["components"]["securitySchemes"])
        schema = {"$ref": "#/components/schemas/Payload", "components": doc["components"]}
        validator = Draft202012Validator(schema)
        for payload in (body(), cloud_event(), batch(2), [body(), cloud_event()]):
            validator.validate(payload)
        assert not validator.is_valid({"data": {"segment_events": [{"event": "shout", "id": "x"}]}})
        assert "/openapi.json" in client.get("/docs").text


class TestLogging:
    def test_one_line_per_request_without_token_or_email(
        self, client: TestClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Each request logs one JSON line with job, status and counts; no secret, no email."""
        # given
        caplog.set_level(logging.INFO, logger="producers.webhook")
        # when
        client.post(URL, json=body(), params={"token": TOKEN})
        client.post(URL, json=body(segment_event("ann@example.com")), params={"token": TOKEN})
        # then
        lines = [json.loads(r.getMessage()) for r in caplog.records
                 if r.name == "producers.webhook"]
        assert [(line["job"], line["status"]) for line in lines] == [("vip", 202), ("vip", 400)]
        assert lines[0]["accepted"] == 1
        assert TOKEN not in caplog.text
        assert "ann@example.com" not in caplog.text
