"""Fixtures for the operational tests: the engine's sandbox and stack, plus a configured CLI."""

from __future__ import annotations

from tests.engine.conftest import (  # noqa: F401 - fixtures reused as is
    configure,
    sandbox_server,
    stack,
)

JOB = {"id": "vip", "audiences": ["vip_buyers"],
       "new_list_opt_in": "single", "new_list_name": "VIP"}
