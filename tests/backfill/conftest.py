"""Backfill tests reuse the engine's end-to-end fixtures: a sandbox and a stack of real workers."""

from __future__ import annotations

from tests.engine.conftest import sandbox_server, stack  # noqa: F401
