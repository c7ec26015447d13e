"""docker-compose.yml and docker/Dockerfile, checked without a Docker engine.

The compose file must satisfy the Compose specification's JSON schema (docs/compose-spec.json),
and every command it runs must exist in this project: the Celery app importable as ``worker``,
each celery sub-command and option known to the installed Celery (and Flower), and each
``klaviyo-export`` sub-command registered in ``console.cli`` with options its parser accepts.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import flower.urls
import jsonschema
import pytest
import yaml
from celery.bin.celery import celery
from flower.options import options as flower_options

import worker
from console.cli import COMMANDS, build_parser
from core.jobs import load_jobs
from core.settings import Settings
from producers.webhook import app as webhook_app
from worker.ops.schedule import OpsSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
SERVICES = ("redis", "worker", "beat", "flower", "webhook", "sandbox")
APP_SERVICES = ("worker", "beat", "flower", "webhook", "sandbox")


@cache
def compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def service(name: str) -> dict[str, Any]:
    return dict(compose()["services"][name])


def command(name: str) -> list[str]:
    cmd = service(name)["command"]
    return list(cmd) if isinstance(cmd, list) else shlex.split(cmd)


def test_compose_file_satisfies_the_compose_schema() -> None:
    schema = json.loads((ROOT / "docs" / "compose-spec.json").read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(compose())]
    assert errors == []


def test_the_bundled_schema_is_the_compose_spec() -> None:
    schema = json.loads((ROOT / "docs" / "compose-spec.json").read_text(encoding="utf-8"))
    assert schema["$id"] == "compose_spec.json"
    assert {"services", "volumes", "networks"} <= set(schema["properties"])


def test_every_service_is_there_with_a_healthcheck() -> None:
    services = compose()["services"]
    assert set(SERVICES) <= set(services)
    for name in SERVICES:
        check = services[name].get("healthcheck")
        assert check and check.get("test"), f"{name} has no healthcheck"


def test_redis_is_durable_and_never_evicts() -> None:
    redis = service("redis")
    assert redis["image"].startswith("redis:7")
    cmd = " ".join(command("redis"))
    for flag in ("--appendonly yes", "--appendfsync everysec", "--maxmemory-policy noeviction"):
        assert flag in cmd
    assert any(str(v).endswith(":/data") for v in redis["volumes"])
    assert service("redis")["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]


def test_workers_can_be_scaled() -> None:
    worker = service("worker")
    assert "container_name" not in worker and "ports" not in worker
    assert command("worker") == ["celery", "-A", "worker", "worker", "-Q",
                                 "realtime,backfill,maintenance", "-E", "--without-gossip",
                                 "--without-mingle"]


def test_app_services_wait_for_a_healthy_redis() -> None:
    for name in ("worker", "beat", "flower", "webhook"):
        assert service(name)["depends_on"]["redis"]["condition"] == "service_healthy", name


def test_the_sandbox_only_runs_in_the_demo_profile() -> None:
    assert service("sandbox")["profiles"] == ["demo"]
    assert all("profiles" not in service(n) for n in SERVICES if n != "sandbox")


def test_the_ha_profile_adds_a_replica_and_three_sentinels_with_a_quorum_of_two() -> None:
    ha = sorted(n for n, svc in compose()["services"].items() if svc.get("profiles") == ["ha"])
    assert ha == ["redis-replica", "sentinel-1", "sentinel-2", "sentinel-3"]
    replica = " ".join(command("redis-replica"))
    for flag in ("--replicaof redis 6379", "--appendonly yes", "--maxmemory-policy noeviction"):
        assert flag in replica
    for name in ("sentinel-1", "sentinel-2", "sentinel-3"):
        script = command(name)[-1]
        assert "--sentinel" in script
        assert "sentinel monitor ${REDIS_SENTINEL_MASTER:-mymaster} redis 6379 2" in script
        assert service(name)["healthcheck"]["test"][-1] == "ping"
    assert "sentinel://sentinel-1:26379;" in COMPOSE.read_text(encoding="utf-8")


def test_flower_asks_for_basic_auth_from_the_environment() -> None:
    cmd = command("flower")
    auth = next(a for a in cmd if a.startswith("--basic-auth="))
    assert "${FLOWER_USER" in auth and "${FLOWER_PASSWORD" in auth
    assert "--port=5555" in cmd


def test_every_setting_comes_from_the_environment() -> None:
    env = compose()["x-settings"]
    expected = {name.upper() for name in (*Settings.model_fields, *OpsSettings.model_fields)}
    assert expected <= set(env), f"missing: {sorted(expected - set(env))}"
    for name in APP_SERVICES:
        assert service(name)["environment"] == env, name


def test_defaults_in_the_compose_file_are_the_settings_defaults() -> None:
    """``${VAR:-default}`` must say what core/settings.py says, so both docs agree."""
    env = compose()["x-settings"]
    fields = {**OpsSettings.model_fields, **Settings.model_fields}
    for name, info in fields.items():
        value = env[name.upper()]
        match = re.fullmatch(r"\$\{(\w+):-(.*)\}", str(value)) if value is not None else None
        if match is None:
            continue  # fixed in the container (EXPORT_JOBS_FILE, REDIS_URL's host) or secret
        assert match.group(1) == name.upper()
        default = info.default
        if name == "redis_url":
            assert match.group(2) == "redis://redis:6379/0"
        elif isinstance(default, float):
            assert float(match.group(2)) == default, name
        elif isinstance(default, bool):  # spelt as YAML and the environment spell it
            assert match.group(2) == str(default).lower(), name
        else:
            assert match.group(2).rstrip("/") == str(default).rstrip("/"), name


def test_secrets_are_never_set_to_an_empty_string() -> None:
    """An empty KLAVIYO_API_KEY would fail validation; unset ones pass through as null."""
    env = compose()["x-settings"]
    for name in ("KLAVIYO_API_KEY", "WEBHOOK_TOKEN", "LYTICS_API_TOKEN", "SENTRY_DSN"):
        assert env[name] is None, name
    text = COMPOSE.read_text(encoding="utf-8")
    assert not re.search(r"\$\{\w+:-\}", text), "a variable defaults to the empty string"
    bare = re.findall(r"\$\{(\w+)\}", text)
    assert bare == [], f"variables without a default: {bare}"


def test_the_celery_app_is_importable_as_worker() -> None:
    assert worker.app.main == "klaviyo_audience_export"


@cache
def celery_help(sub: str) -> str:
    done = subprocess.run([sys.executable, "-m", "celery", "-A", "worker", sub, "--help"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def celery_commands() -> list[tuple[str, list[str]]]:
    out = [(n, command(n)) for n in APP_SERVICES if command(n)[0] == "celery"]
    for name in APP_SERVICES:
        test = service(name)["healthcheck"]["test"]
        if test[0] == "CMD-SHELL" and test[1].startswith("celery "):
            out.append((f"{name} healthcheck", shlex.split(test[1].split(">")[0])))
    return out


@pytest.mark.parametrize(("where", "cmd"), celery_commands(), ids=[w for w, _ in celery_commands()])
def test_celery_commands_exist(where: str, cmd: list[str]) -> None:
    assert cmd[:3] == ["celery", "-A", "worker"], where
    sub = cmd[3]
    assert sub in celery.commands, f"{where}: no celery sub-command {sub!r}"
    options = [a.split("=", 1)[0] for a in cmd[4:] if a.startswith("-")]
    if sub == "flower":  # Flower parses its own (tornado) options
        for opt in options:
            assert opt.lstrip("-") in flower_options._options, f"{where}: {opt}"
        return
    text = celery_help(sub)
    for opt in options:
        assert re.search(rf"(^|[\s,]){re.escape(opt)}\b", text), f"{where}: unknown option {opt}"


def klaviyo_export_commands() -> list[tuple[str, list[str]]]:
    return [(n, command(n)) for n in APP_SERVICES if command(n)[0] == "klaviyo-export"]


@pytest.mark.parametrize(("where", "cmd"), klaviyo_export_commands(),
                         ids=[w for w, _ in klaviyo_export_commands()])
def test_klaviyo_export_commands_exist(where: str, cmd: list[str]) -> None:
    assert cmd[1] in COMMANDS, f"{where}: no klaviyo-export sub-command {cmd[1]!r}"
    args = build_parser().parse_args(cmd[1:])  # exits (SystemExit) on an unknown option
    assert args.command == cmd[1]
    assert callable(args.func)


def test_klaviyo_export_is_the_project_script() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["scripts"]["klaviyo-export"] == "console.cli:main"


def test_healthchecks_reach_real_endpoints() -> None:
    """The HTTP paths the healthchecks poll are routes the services serve."""
    source = Path(webhook_app.__file__).read_text(encoding="utf-8")
    assert '"/readyz"' in source
    assert "/readyz" in " ".join(service("webhook")["healthcheck"]["test"])
    assert "/healthcheck" in Path(flower.urls.__file__).read_text(encoding="utf-8")
    sandbox_check = " ".join(service("sandbox")["healthcheck"]["test"])
    assert "/_sandbox/faults" in sandbox_check


def dockerfile_lines() -> list[str]:
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_dockerfile_copies_only_files_that_exist() -> None:
    copies = [shlex.split(line)[1:-1] for line in dockerfile_lines() if line.startswith("COPY ")]
    assert copies
    for sources in copies:
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such file in the project"


def test_dockerfile_installs_from_the_lock_file() -> None:
    runs = " ".join(line for line in dockerfile_lines() if line.startswith("RUN "))
    assert "uv sync --frozen --no-dev" in runs
    assert dockerfile_lines()[0].startswith("FROM python:3.11")
    assert any(line.startswith("USER ") and "root" not in line for line in dockerfile_lines())


def test_compose_builds_from_the_dockerfile() -> None:
    build = service("worker")["build"]
    assert (ROOT / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE.resolve()


def test_dockerignore_keeps_secrets_and_local_state_out() -> None:
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    for entry in (".env", ".venv", ".git"):
        assert entry in ignored


def test_the_jobs_file_mounted_by_default_is_valid() -> None:
    mount = service("worker")["volumes"][0]
    default = re.search(r"\$\{JOBS_FILE:-([^}]+)\}", mount)
    assert default is not None
    assert load_jobs(ROOT / default.group(1)).jobs
