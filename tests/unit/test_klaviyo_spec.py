"""Request and response validation against Klaviyo's own OpenAPI schemas."""

from __future__ import annotations

import copy
import pickle
from datetime import UTC, datetime
from typing import Any

import pytest

from contract import operations as ops
from contract.spec import (
    SpecViolation,
    honour_nullable,
    load_spec,
    validate_request,
    validate_response,
)
from worker.klaviyo.bulk_import import bulk_import_body
from worker.klaviyo.lists import create_list_body, members_body
from worker.klaviyo.profiles import profile_body
from worker.klaviyo.subscriptions import SubscribeProfile, subscribe_body

ERROR = {"errors": [{"id": "e1", "code": "invalid", "title": "Invalid input",
                     "detail": "bad", "source": {"pointer": "/data"}}]}


class TestSpecFile:
    """The bundled subset covers every operation we call."""

    def test_loaded_once(self) -> None:
        """load_spec is cached: the same object every time."""
        assert load_spec() is load_spec()

    @pytest.mark.parametrize("op", ops.ALL, ids=lambda op: op.name)
    def test_every_operation_is_in_the_spec(self, op: ops.Operation) -> None:
        """Each operation's method and path exist in the spec under its operationId."""
        assert load_spec()["paths"][op.path][op.method.lower()]["operationId"] == op.name


class TestHonourNullable:
    """OpenAPI's ``nullable: true`` is rewritten into JSON Schema that admits null."""

    @pytest.mark.parametrize(("schema", "expected"), [
        ({"type": "string", "nullable": True}, {"type": ["string", "null"]}),
        ({"type": "string", "enum": ["a"], "nullable": True},
         {"type": ["string", "null"], "enum": ["a", None]}),
        ({"oneOf": [{"type": "string"}], "nullable": True},
         {"oneOf": [{"type": "string"}, {"type": "null"}]}),
        ({"type": "string", "nullable": False}, {"type": "string"}),
        ({"properties": {"nullable": {"type": "string"}}},
         {"properties": {"nullable": {"type": "string"}}}),
    ])
    def test_rewrite(self, schema: dict[str, Any], expected: dict[str, Any]) -> None:
        """Typed schemas widen their type (and enum); combinators gain a null branch."""
        assert honour_nullable(schema) == expected

    def test_nullable_ref_is_inlined(self) -> None:
        """A nullable ``$ref`` is replaced by its target, widened to admit null."""
        rewritten = honour_nullable({"$ref": "#/components/schemas/ProfileLocation",
                                     "nullable": True})

        assert rewritten["type"] == ["object", "null"]
        assert rewritten["properties"]["city"]["type"] == ["string", "null"]

    @pytest.mark.parametrize("attributes", [
        {"email": "a@x.io", "location": None},
        {"email": "a@x.io", "location": {"latitude": None, "longitude": 10.7}},
        {"email": "a@x.io", "location": {"latitude": "59.9", "city": None}},
        {"email": None, "phone_number": "+15005550006", "properties": None},
    ])
    def test_nulls_accepted_where_the_spec_allows(self, attributes: dict[str, Any]) -> None:
        """Nullable fields take null (profile-import clears a field that way)."""
        validate_request(ops.PROFILE_IMPORT, profile_body(attributes))


class TestValidateRequest:
    """Bodies the client builds pass; broken bodies fail with the bad field named."""

    @pytest.mark.parametrize(("op", "body"), [
        (ops.CREATE_LIST, create_list_body("Buyers")),
        (ops.CREATE_LIST, create_list_body("Buyers", "double_opt_in")),
        (ops.ADD_PROFILES_TO_LIST, members_body(["P1", "P2"])),
        (ops.REMOVE_PROFILES_FROM_LIST, members_body(["P1"])),
        (ops.PROFILE_IMPORT, profile_body({"email": "a@x.io", "properties": {"k": [1, "v"]}})),
        (ops.BULK_IMPORT, bulk_import_body([{"email": "a@x.io"}])),
        (ops.BULK_IMPORT, bulk_import_body([{"email": "a@x.io", "location": {"zip": "0150"}}],
                                           "L1")),
        (ops.BULK_SUBSCRIBE, subscribe_body("L1", [SubscribeProfile("a@x.io")])),
        (ops.BULK_SUBSCRIBE, subscribe_body(
            "L1", [SubscribeProfile("a@x.io", datetime(2024, 1, 1, tzinfo=UTC))],
            historical_import=True, custom_source="sync")),
    ], ids=lambda v: v.name if isinstance(v, ops.Operation) else "")
    def test_built_bodies_are_valid(self, op: ops.Operation, body: dict[str, Any]) -> None:
        """Every body builder produces what the spec accepts."""
        validate_request(op, body)

    @pytest.mark.parametrize(("op", "body", "pointer", "reason"), [
        (ops.CREATE_LIST, {"data": {"type": "list", "attributes": {"name": 5}}},
         "/data/attributes/name", "must be string"),
        (ops.CREATE_LIST, {"data": {"type": "list", "attributes": {"name": "x",
                                                                    "opt_in_process": "maybe"}}},
         "/data/attributes/opt_in_process", "must be one of"),
        (ops.CREATE_LIST, {"data": {"type": "list"}}, "/data", "['attributes']"),
        (ops.ADD_PROFILES_TO_LIST, {"data": [{"type": "profile", "id": "P1"}, {"type": "profile"}]},
         "/data/1", "['id']"),
        (ops.BULK_IMPORT, bulk_import_body([{"email": "a@x.io"}, {"email": 7}]),
         "/data/attributes/profiles/data/1/attributes/email", "must be string or null"),
        (ops.BULK_SUBSCRIBE, {"data": {"type": "profile-subscription-bulk-create-job",
                                       "attributes": {"profiles": {"data": [{
                                           "type": "profile", "attributes": {
                                               "email": "a@x.io", "subscriptions": {"email": {
                                                   "marketing": {"consent": "YES"}}}}}]}}}},
         "/data/attributes/profiles/data/0/attributes/subscriptions/email/marketing/consent",
         "must be one of ['SUBSCRIBED']"),
    ])
    def test_invalid_body_names_the_field(
        self, op: ops.Operation, body: dict[str, Any], pointer: str, reason: str
    ) -> None:
        """SpecViolation's message and pointer name exactly the bad field."""
        with pytest.raises(SpecViolation) as caught:
            validate_request(op, body)

        assert caught.value.pointer == pointer
        assert f"{op.name} request body at {pointer}: " in str(caught.value)
        assert reason in str(caught.value)

    def test_a_body_where_none_is_taken(self) -> None:
        """A GET with a body is refused."""
        with pytest.raises(SpecViolation, match="get_lists request body must be empty"):
            validate_request(ops.GET_LISTS, {"data": {}})

    def test_a_missing_body(self) -> None:
        """A POST without a body is refused; a GET without one passes."""
        validate_request(ops.GET_LISTS, None)
        with pytest.raises(SpecViolation, match="create_list request body is missing"):
            validate_request(ops.CREATE_LIST, None)

    def test_validation_never_changes_the_body(self) -> None:
        """Schema defaults (historical_import: false, ...) are never written into the body."""
        body = {"data": {"type": "profile-subscription-bulk-create-job",
                         "attributes": {"profiles": {"data": []}}}}
        before = copy.deepcopy(body)

        validate_request(ops.BULK_SUBSCRIBE, body)

        assert body == before

    def test_violation_is_a_picklable_value_error(self) -> None:
        """SpecViolation is a ValueError and survives pickling with its pointer."""
        violation = SpecViolation("create_list request body at /data: bad", "/data")

        restored: SpecViolation = pickle.loads(pickle.dumps(violation))

        assert isinstance(restored, ValueError)
        assert (str(restored), restored.pointer) == (str(violation), "/data")


class TestValidateResponse:
    """Answers are checked against the response documented for their status."""

    @pytest.mark.parametrize("status", [400, 404, 429, 500, 503])
    def test_error_documents(self, status: int) -> None:
        """4XX and 5XX answers must be JSON:API error documents."""
        validate_response(ops.GET_LISTS, status, ERROR)

    def test_error_document_missing_fields(self) -> None:
        """An error item without code, title and detail is named."""
        with pytest.raises(SpecViolation, match=r"HTTP 400 response at /errors/0"):
            validate_response(ops.GET_LISTS, 400, {"errors": [{"id": "e1"}]})

    def test_no_content_must_be_empty(self) -> None:
        """A 204 (or the subscribe job's 202) carries no document."""
        validate_response(ops.ADD_PROFILES_TO_LIST, 204, None)
        with pytest.raises(SpecViolation, match="must be empty"):
            validate_response(ops.BULK_SUBSCRIBE, 202, {"data": {}})

    def test_content_must_be_present(self) -> None:
        """A documented body cannot be missing."""
        with pytest.raises(SpecViolation, match="is missing"):
            validate_response(ops.GET_LIST, 200, None)

    def test_undocumented_status(self) -> None:
        """A status the operation does not document is a violation in itself."""
        with pytest.raises(SpecViolation, match="HTTP 201 is not a documented response"):
            validate_response(ops.GET_LIST, 201, {"data": {}})
