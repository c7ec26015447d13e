"""Logs: one JSON object per line, emails masked, keys and tokens never written."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from core.dispatch import masked_args
from core.settings import Settings
from worker.ops import observability

KEY = "pk_live_0123456789abcdef"
TOKEN = "webhook-token-9f8e7d6c"


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    observability.remember_secrets(Settings(webhook_token=SecretStr(TOKEN)))
    stream = io.StringIO()
    logger = logging.getLogger("tests.ops.structured")
    logger.handlers = [logging.StreamHandler(stream)]
    logger.propagate = False
    observability.structure(logger)
    yield logger, stream
    logger.handlers = []


def test_one_masked_json_line_per_record(logged: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = logged
    logger.warning("subscribing %s with %s and %s", "ann@example.com", KEY, TOKEN)
    try:
        raise ValueError(f"bad profile bob@example.org\nkey={KEY}")
    except ValueError:
        logger.exception("flush failed for %s", "bob@example.org")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["msg"] == "subscribing a***@example.com with pk_*** and [Filtered]"
    assert first["level"] == "WARNING" and first["logger"] == "tests.ops.structured"
    assert "b***@example.org" in second["exc"] and "ValueError" in second["exc"]
    text = stream.getvalue()
    for secret in ("ann@example.com", "bob@example.org", KEY, TOKEN):
        assert secret not in text


def test_celery_logger_setup_structures_root_and_celery() -> None:
    root = logging.getLogger()
    handler = logging.StreamHandler(io.StringIO())
    root.addHandler(handler)
    try:
        observability._on_setup_logger(logger=root)
        assert isinstance(handler.formatter, observability.StructuredFormatter)
    finally:
        root.removeHandler(handler)


def test_published_task_arguments_are_masked_for_flower() -> None:
    headers = {"argsrepr": f"('vip', [{{'email': 'ann@example.com', 'key': '{KEY}'}}])",
               "kwargsrepr": "{}"}
    observability._mask_published(headers=headers)
    assert "ann@example.com" not in headers["argsrepr"] and KEY not in headers["argsrepr"]
    assert masked_args("vip", 3) == "('vip', <3 events>)"
