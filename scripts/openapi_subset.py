"""Cut Klaviyo's OpenAPI document down to the operations this project calls.

Usage: python -m scripts.openapi_subset FULL_SPEC.json [OUT.json]

OUT defaults to the bundled copy, ``contract/openapi/klaviyo-openapi-subset.json``
(``contract.spec.SPEC_PATH``). Keeps every path whose operationId is one of
``contract.operations`` or of ``sandbox.extra_operations`` (add an operation there first)
and every component those
operations reach through ``$ref``, so the sandbox and the tests validate against
Klaviyo's own schemas without carrying the whole 3 MB document.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from contract.spec import SPEC_PATH
from sandbox.extra_operations import SERVED_BY_NAME

# every operation of the contract and those the sandbox alone serves, by operationId
OPERATIONS = frozenset(SERVED_BY_NAME)


def _refs(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/"):
            found.add(ref)
        for value in node.values():
            _refs(value, found)
    elif isinstance(node, list):
        for value in node:
            _refs(value, found)


def subset(spec: dict[str, Any]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for path, ops in spec["paths"].items():
        kept = {
            m: o
            for m, o in ops.items()
            if isinstance(o, dict) and o.get("operationId") in OPERATIONS
        }
        if kept:
            paths[path] = kept
    components: dict[str, dict[str, Any]] = {}
    pending: set[str] = set()
    _refs(paths, pending)
    seen: set[str] = set()
    while pending:
        ref = pending.pop()
        if ref in seen:
            continue
        seen.add(ref)
        _, _, kind, name = ref.split("/", 3)
        node = spec["components"][kind][name]
        components.setdefault(kind, {})[name] = node
        _refs(node, pending)
    out: dict[str, Any] = {k: spec[k] for k in ("openapi", "info", "servers") if k in spec}
    out["paths"] = paths
    out["components"] = {**components, "securitySchemes": spec["components"]["securitySchemes"]}
    return out


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as src:
        full = json.load(src)
    target = sys.argv[2] if len(sys.argv) > 2 else str(SPEC_PATH)
    with open(target, "w", encoding="utf-8") as dst:
        json.dump(subset(full), dst, indent=1, sort_keys=True)
