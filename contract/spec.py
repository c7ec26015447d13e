"""What Klaviyo accepts, as its own document says: the bundled OpenAPI schemas, checked locally.

The operations' caps are enforced by the client before it sends (``worker.klaviyo.caps``);
this module holds what both sides read from Klaviyo's document: :func:`validate_request` and
:func:`validate_response` check documents against Klaviyo's own schemas in
``openapi/klaviyo-openapi-subset.json``, compiled with fastjsonschema once per
operation and status, lazily. OpenAPI 3.0's ``nullable: true`` is not JSON Schema,
so schemas are rewritten first: ``type: T`` becomes ``type: [T, "null"]`` and any
other nullable schema becomes ``anyOf: [null, schema]``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import fastjsonschema
import orjson

from contract.operations import Operation

SPEC_PATH = Path(__file__).parent / "openapi" / "klaviyo-openapi-subset.json"
JSON_API = "application/vnd.api+json"

Validator = Callable[[Any], Any]


class SpecViolation(ValueError):
    """A document that Klaviyo's schema refuses; ``pointer`` names the bad field."""

    def __init__(self, message: str, pointer: str = "") -> None:
        super().__init__(message, pointer)
        self.message = message
        self.pointer = pointer

    def __str__(self) -> str:
        return self.message


# -- schemas ---------------------------------------------------------------------------


@cache
def load_spec() -> dict[str, Any]:
    """The bundled OpenAPI subset, parsed once per process."""
    spec: dict[str, Any] = orjson.loads(SPEC_PATH.read_bytes())
    return spec


def honour_nullable(node: Any) -> Any:
    """A copy of ``node`` in which every OpenAPI ``nullable: true`` also admits JSON null."""
    if isinstance(node, list):
        return [honour_nullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: honour_nullable(v) for k, v in node.items() if not _is_nullable_flag(k, v)}
    return _admit_null(out) if node.get("nullable") is True else out


def _is_nullable_flag(key: str, value: Any) -> bool:
    return key == "nullable" and isinstance(value, bool)  # not a property named "nullable"


def _admit_null(schema: dict[str, Any]) -> dict[str, Any]:
    """Widen one schema to admit null, keeping fastjsonschema's messages precise."""
    if "$ref" in schema:  # inline the target so a bad field is still named exactly
        target = honour_nullable(_resolve(schema))
        return _admit_null({**target, **{k: v for k, v in schema.items() if k != "$ref"}})
    kind = schema.get("type")
    if isinstance(kind, str) and "allOf" not in schema:
        widened = {**schema, "type": [kind, "null"]}
        if "enum" in schema:
            widened["enum"] = [*schema["enum"], None]
        return widened
    for key in ("oneOf", "anyOf"):
        if key in schema and "type" not in schema:
            return {**schema, key: [*schema[key], {"type": "null"}]}
    return {"anyOf": [{"type": "null"}, schema]}


@cache
def _components() -> dict[str, Any]:
    components: dict[str, Any] = honour_nullable(load_spec()["components"])
    return components


def _spec_operation(op: Operation) -> dict[str, Any]:
    try:
        found: dict[str, Any] = load_spec()["paths"][op.path][op.method.lower()]
    except KeyError:
        raise ValueError(f"{op.name} ({op.method} {op.path}) is not in the bundled spec") from None
    return found


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    """Follow a local ``$ref`` (``#/components/responses/...``) to the object it names."""
    ref = node.get("$ref")
    if not isinstance(ref, str):
        return node
    target: Any = load_spec()
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    return _resolve(target)


def _schema(op: Operation, key: str) -> dict[str, Any] | None:
    """The JSON schema of ``op``'s request body (``key="request"``) or of one response."""
    found = _spec_operation(op)
    source = found.get("requestBody") if key == "request" else found["responses"][key]
    content = _resolve(source).get("content") if source is not None else None
    return content[JSON_API]["schema"] if content else None


@cache
def _validator(op: Operation, key: str, detailed: bool = False) -> Validator | None:
    """Compiled once per operation and key. Detailed validators embed expanded schemas
    in their code (slow to compile), so they are built only to explain a failure."""
    schema = _schema(op, key)
    if schema is None:
        return None
    wrapper = {"components": _components(), **honour_nullable(schema)}
    validator: Validator = fastjsonschema.compile(
        wrapper, use_default=False, detailed_exceptions=detailed
    )
    return validator


def _response_key(op: Operation, status: int) -> str:
    responses = _spec_operation(op)["responses"]
    for key in (str(status), f"{status // 100}XX", "default"):
        if key in responses:
            return key
    raise SpecViolation(f"{op.name}: HTTP {status} is not a documented response")


def _check(op: Operation, key: str, document: Any, what: str) -> None:
    validator = _validator(op, key)
    if validator is None:
        if document is not None:
            raise SpecViolation(f"{what} must be empty")
        return
    if document is None:
        raise SpecViolation(f"{what} is missing")
    try:
        validator(document)
    except fastjsonschema.JsonSchemaValueException:
        _explain(op, key, document, what)


def _explain(op: Operation, key: str, document: Any, what: str) -> None:
    detailed = _validator(op, key, detailed=True)
    try:
        if detailed is not None:
            detailed(document)
    except fastjsonschema.JsonSchemaValueException as exc:
        pointer = "/" + "/".join(str(part) for part in exc.path[1:])
        reason = exc.message.removeprefix(exc.name or "").strip()
        raise SpecViolation(f"{what} at {pointer}: {reason}", pointer) from None
    raise SpecViolation(f"{what} does not match the schema")  # unreachable: same schema


def validate_request(op: Operation, body: dict[str, Any] | None) -> None:
    """Raise SpecViolation unless ``body`` is what ``op``'s requestBody schema accepts."""
    _check(op, "request", body, f"{op.name} request body")


def validate_response(op: Operation, status: int, document: dict[str, Any] | None) -> None:
    """Raise SpecViolation unless ``document`` is what ``op`` documents for ``status``."""
    _check(op, _response_key(op, status), document, f"{op.name} HTTP {status} response")
