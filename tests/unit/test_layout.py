"""The layout shows the architecture: data flows one way (Lytics → producers → Redis →
engine → Klaviyo), each package imports only what sits below it, and shared facts have one
owner. These specs read the source (``ast``), so a wrong import fails here, not in review."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("contract", "core", "worker", "producers", "console", "sandbox")
# who may import whom, besides itself, the standard library and third-party packages
ALLOWED = {
    "contract": set(),
    "core": {"contract"},
    "producers": {"core", "contract"},
    "sandbox": {"contract"},
    "worker": {"core", "contract"},
    "console": {"core", "contract", "worker", "producers", "sandbox"},
}
KEY_PARTS = (":job:", ":bf:", ":rl:", ":acct:", ":celery:", ":redbeat:", ":heartbeat:",
             ":health", ":deliveries:", ":jobs", ":kjob", ":flush-", ":people:", ":dlq")


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _imported(path: Path) -> set[str]:
    """Top-level packages of the product that ``path`` imports (at any depth of the module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module":
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.JoinedStr) and isinstance(arg.values[0], ast.Constant):
                found.add(str(arg.values[0].value).split(".")[0])
    return found & set(PRODUCT)


@pytest.mark.parametrize("package", PRODUCT)
def test_each_package_imports_only_what_sits_below_it(package: str) -> None:
    """sandbox → contract only; producers → core, contract; core → contract; contract → none."""
    wrong = {str(p.relative_to(ROOT)): sorted(_imported(p) - ALLOWED[package] - {package})
             for p in _modules(package)}
    assert {p: w for p, w in wrong.items() if w} == {}


def test_worker_has_at_most_ten_modules_directly_inside() -> None:
    top = sorted(p.name for p in (ROOT / "worker").glob("*.py"))
    assert len(top) <= 10, top


def _string_parts(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        return [v.value for v in node.values if isinstance(v, ast.Constant)]
    return []


@pytest.mark.parametrize("package", ("contract", "core", "worker", "producers", "console"))
def test_redis_keys_are_built_in_core_keys_only(package: str) -> None:
    """No f-string or literal spells a key layout outside core/keys.py (the Lua scripts get
    their suffixes from it through worker.state.codes)."""
    found = []
    for path in _modules(package):
        if path == ROOT / "core" / "keys.py":
            continue
        tree = ast.parse(path.read_text())
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef)
                      and n.body and isinstance(n.body[0], ast.Expr)}
        for node in ast.walk(tree):
            if id(node) in docstrings:
                continue
            for part in _string_parts(node):
                if any(k in part for k in KEY_PARTS) and isinstance(node, ast.JoinedStr):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {part!r}")
    assert found == []


@pytest.mark.parametrize("package", ("core", "worker", "producers", "console"))
def test_every_redis_client_is_built_by_core_redisconn(package: str) -> None:
    """One owner builds Redis clients (``core.redisconn``), so each follows a Sentinel master
    and carries the configured credentials; a client built from the URL by hand would not."""
    found = [f"{path.relative_to(ROOT)}:{node.lineno}"
             for path in _modules(package) if path != ROOT / "core" / "redisconn.py"
             for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.Attribute) and node.attr == "from_url"]
    assert found == []


def test_the_module_map_in_architecture_md_names_every_module() -> None:
    """docs/architecture.md's module map names every module, so it matches the tree."""
    doc = (ROOT / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"`([\w/]+(?:\.py|/))`", doc))
    missing = []
    for package in PRODUCT:
        for path in _modules(package):
            rel = path.relative_to(ROOT).as_posix()
            if path.name == "__init__.py":
                rel = path.parent.relative_to(ROOT).as_posix() + "/"
            if rel not in named:
                missing.append(rel)
    assert missing == []
