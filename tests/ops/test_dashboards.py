"""The Grafana dashboard and the Prometheus alert rules in deploy/ (issue #18): valid
documents that name only metrics the collector serves, with health's own thresholds."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from typing import Any

import jsonschema
import pytest
import redis
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from core.metrics import RedisCollector, registry_for
from core.settings import Settings
from tests.harness import ROOT

DASHBOARD = ROOT / "deploy" / "grafana" / "klaviyo-export.json"
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
METRIC = re.compile(r"\bklaviyo_export_[a-z_]+\b")

# The parts of Grafana's dashboard model (schemaVersion 39) a provisioned dashboard needs.
TARGET = {"type": "object", "required": ["refId", "expr"],
          "properties": {"refId": {"type": "string"}, "expr": {"type": "string", "minLength": 1},
                         "legendFormat": {"type": "string"}}}
PANEL = {
    "type": "object",
    "required": ["id", "type", "title", "gridPos", "targets", "datasource"],
    "properties": {
        "id": {"type": "integer"},
        "type": {"enum": ["timeseries", "stat", "table", "gauge", "bargauge"]},
        "title": {"type": "string", "minLength": 1},
        "gridPos": {"type": "object", "required": ["h", "w", "x", "y"],
                    "properties": {k: {"type": "integer", "minimum": 0} for k in "hwxy"}},
        "datasource": {"type": "object", "required": ["type", "uid"]},
        "targets": {"type": "array", "minItems": 1, "items": TARGET},
    },
}
DASHBOARD_SCHEMA = {
    "type": "object",
    "required": ["uid", "title", "schemaVersion", "panels", "time", "templating"],
    "properties": {
        "uid": {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,40}$"},
        "title": {"type": "string", "minLength": 1},
        "schemaVersion": {"type": "integer", "minimum": 30},
        "time": {"type": "object", "required": ["from", "to"]},
        "templating": {"type": "object", "required": ["list"]},
        "panels": {"type": "array", "minItems": 1, "items": PANEL},
    },
}
# Prometheus' rule file format (docs: configuration/recording_rules, alerting_rules).
RULES_SCHEMA = {
    "type": "object", "required": ["groups"], "additionalProperties": False,
    "properties": {"groups": {"type": "array", "minItems": 1, "items": {
        "type": "object", "required": ["name", "rules"], "additionalProperties": False,
        "properties": {"name": {"type": "string"}, "interval": {"type": "string"},
                       "rules": {"type": "array", "minItems": 1, "items": {
                           "type": "object", "required": ["alert", "expr"],
                           "additionalProperties": False,
                           "properties": {
                               "alert": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
                               "expr": {"type": "string", "minLength": 1},
                               "for": {"type": "string", "pattern": r"^\d+[smhdwy]$"},
                               "labels": {"type": "object",
                                          "additionalProperties": {"type": "string"}},
                               "annotations": {"type": "object",
                                               "additionalProperties": {"type": "string"}},
                           }}}}}}},
}


def served_names(redis_url: str) -> set[str]:
    """Every metric and sample name the collector can serve (families print even when empty)."""
    client = redis.Redis.from_url(redis_url)
    text = generate_latest(registry_for(RedisCollector(client, f"d{time.time_ns()}",
                                                       lambda: []))).decode()
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}
        names |= {family.name, *(family.name + s for s in suffixes.get(family.type, []))}
    return names


def exprs_of_dashboard() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dash["panels"] for t in p["targets"]]


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def test_the_dashboard_is_a_valid_grafana_dashboard() -> None:
    jsonschema.validate(json.loads(DASHBOARD.read_text()), DASHBOARD_SCHEMA)
    ids = [p["id"] for p in json.loads(DASHBOARD.read_text())["panels"]]
    assert len(ids) == len(set(ids))


def test_the_dashboard_and_rules_name_only_served_metrics(redis_url: str) -> None:
    names = served_names(redis_url)
    assert "klaviyo_export_job_added_total" in names  # the collector really was read
    for expr in [*exprs_of_dashboard(), *(r["expr"] for r in rules())]:
        unknown = set(METRIC.findall(expr)) - names
        assert not unknown, f"{expr}: {unknown}"


def test_the_rules_are_a_valid_rule_file_with_healths_thresholds() -> None:
    jsonschema.validate(yaml.safe_load(RULES.read_text()), RULES_SCHEMA)
    by_name = {r["alert"]: r["expr"] for r in rules()}
    defaults = Settings.model_fields
    assert by_name["KlaviyoExportQueueBacklog"] == (
        f"klaviyo_export_queue_depth > {defaults['queue_depth_threshold'].default}")
    assert by_name["KlaviyoExportDeadLetters"] == (
        f"klaviyo_export_job_dead_letters > {defaults['dead_letter_threshold'].default}")
    stale = 3 * defaults["heartbeat_interval_seconds"].default  # health: 3 periods
    assert by_name["KlaviyoExportHeartbeatStale"] == (
        f"klaviyo_export_heartbeat_age_seconds > {stale:g}")


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_accepts_the_rules_and_the_example_configuration() -> None:
    for check in (["rules", str(RULES)], ["config", str(RULES.with_name("prometheus.yml"))]):
        proc = subprocess.run(["promtool", "check", *check], capture_output=True, text=True,
                              check=False, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
