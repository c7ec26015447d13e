"""Typed settings, read from the environment and an optional ``.env`` file.

Every value is validated when first read; a bad value stops the program with one
line that names the variable (see :func:`load_settings`). Secrets are
``SecretStr`` so that neither ``repr`` nor logs can show them.
"""

from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import AnyHttpUrl, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from core.redisconn import DEFAULT_MASTER, RedisTarget, RedisUrlError, parse_redis_url

PositiveFloat = Annotated[float, Field(gt=0)]
MIN_HEALTH_SECONDS = 60.0  # GET_ACCOUNTS allows 15 calls a minute per key: one a minute is ours


class ConfigurationError(Exception):
    """A setting or a jobs file is wrong; the message says which and why."""


class Settings(BaseSettings):
    """Everything the worker, the producers and the CLI read from the environment."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    # Redis: one server (redis://, rediss://, unix://) or Sentinel (sentinel://h:p;sentinel://h:p,
    # the master named REDIS_SENTINEL_MASTER); see core/redisconn.py.
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_sentinel_master: str = Field(default=DEFAULT_MASTER, pattern=r"^[A-Za-z0-9_.-]+$")
    redis_username: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.@-]+$")
    redis_password: SecretStr | None = None  # the data nodes' (overrides the URL's)
    redis_sentinel_password: SecretStr | None = None  # the sentinels' own requirepass
    # replicas that must hold events before a 202 (None: 1 with Sentinel, 0 with one Redis)
    redis_wait_replicas: int | None = Field(default=None, ge=0, le=16)
    redis_wait_timeout_ms: int = Field(default=1000, ge=10, le=30_000)
    klaviyo_api_key: SecretStr | None = None
    klaviyo_base_url: AnyHttpUrl = AnyHttpUrl("https://a.klaviyo.com")
    klaviyo_revision: str = Field(default="2026-07-15", pattern=r"^\d{4}-\d{2}-\d{2}(\.pre)?$")
    export_jobs_file: Path = Path("jobs.toml")
    webhook_token: SecretStr | None = None
    lytics_api_token: SecretStr | None = None
    lytics_base_url: AnyHttpUrl = AnyHttpUrl("https://api.lytics.io")
    sentry_dsn: SecretStr | None = None
    # Operational knobs: defaults suit production; tests shorten them.
    key_prefix: str = Field(default="kae", pattern=r"^[A-Za-z0-9_.:-]+$")
    flush_interval_seconds: PositiveFloat = 1.0
    flush_batch_size: int = Field(default=1000, ge=1, le=10_000)
    rate_limit_headroom: float = Field(default=0.95, gt=0, le=1)
    rate_limit_speed: PositiveFloat = 1.0
    http_connect_timeout: PositiveFloat = 5.0
    http_read_timeout: PositiveFloat = 30.0
    visibility_timeout_seconds: int = Field(default=1800, ge=10)
    lease_seconds: PositiveFloat = 120.0
    subscribe_settle_seconds: float = Field(default=30.0, ge=0)
    flush_parallelism: int = Field(default=4, ge=1, le=64)
    poll_interval_seconds: PositiveFloat = 1.0
    # mapped fields wait this long to fill a 10,000-profile attribute import before a
    # partial one is sent (bulk imports: 150 a minute, shared with force-add)
    attribute_wait_seconds: PositiveFloat = 2.0
    sweep_interval_seconds: PositiveFloat = 5.0
    bootstrap_interval_seconds: PositiveFloat = 60.0
    max_deliveries: int = Field(default=5, ge=1)
    webhook_max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    webhook_max_queue_depth: int = Field(default=100_000, ge=1)
    # Event time and asynchronous Klaviyo jobs: how long a removal waits for a profile that
    # a subscribe job has not created yet, and how far ahead of our clock an event may be.
    removal_wait_seconds: PositiveFloat = 900.0
    max_event_skew_seconds: float = Field(default=300.0, ge=0)
    # Double opt-in lists: how often the list's recent joiners are read to find who of the
    # people awaiting confirmation confirmed (one call per page of 100 joiners, per job);
    # the same read is their incremental audit (joiners in no audience are extra drift).
    confirm_interval_seconds: PositiveFloat = 60.0
    # Every other list (single opt-in, force add): how often its recent joiners are read for
    # the incremental audit alone, through the background client (live flushes go first)
    audit_incremental_seconds: PositiveFloat = 300.0
    # Scheduled full audits: how often beat checks which jobs are due one (each job's
    # ``audit_every_hours``)
    audit_check_interval_seconds: PositiveFloat = 300.0

    # The opt-out mirror (worker/engine/optouts.py): how often beat reads new suppressions,
    # and after how long the whole mirror is read again (to drop suppressions lifted since)
    optouts_refresh_seconds: PositiveFloat = 30.0
    optouts_rebuild_seconds: PositiveFloat = 86_400.0

    # `make run` against a real Klaviyo (a non-local KLAVIYO_BASE_URL): refused unless true
    demo_allow_real_klaviyo: bool = False

    # --- Beat and health (worker/ops/schedule.py, worker/ops/health.py) ----------------------
    heartbeat_interval_seconds: PositiveFloat = 10.0
    health_interval_seconds: PositiveFloat = 60.0
    beat_lock_timeout_seconds: int = Field(default=30, ge=1)
    beat_max_loop_interval_seconds: PositiveFloat = 5.0
    queue_depth_threshold: int = Field(default=10_000, ge=0)
    dead_letter_threshold: int = Field(default=0, ge=0)
    # ``health`` fails when the last audit found more drift than this (people off their
    # rightful place: missing unexplained, extra the job would remove)
    audit_drift_threshold: int = Field(default=0, ge=0)

    @field_validator("redis_url")
    @classmethod
    def _redis_url_usable(cls, value: str) -> str:
        try:
            parse_redis_url(value)
        except RedisUrlError as exc:
            raise ValueError(f"not a usable Redis URL: {exc}") from None
        return value.strip()

    @property
    def redis_target(self) -> RedisTarget:
        """``REDIS_URL`` parsed: one server, or the sentinels and the database."""
        return parse_redis_url(self.redis_url)

    @field_validator("klaviyo_api_key")
    @classmethod
    def _key_looks_private(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith("pk_"):
            raise ValueError("a Klaviyo private API key starts with 'pk_'")
        return value

    @property
    def joiners_period(self) -> float:
        """Beat's period for passes over recent joiners: the shorter of the two cadences
        (each job's pass is then due at its own, :func:`worker.engine.confirm.cadence`)."""
        return min(self.confirm_interval_seconds, self.audit_incremental_seconds)

    @property
    def health_period(self) -> float:
        """The health task's period: never more often than once a minute (Klaviyo's budget)."""
        return max(self.health_interval_seconds, MIN_HEALTH_SECONDS)


def describe_error(exc: ValidationError) -> str:
    """Turn a pydantic error into one line naming the variable, never its value."""
    first = exc.errors()[0]
    name = str(first["loc"][0]).upper() if first["loc"] else "settings"
    return f"invalid setting {name}: {first['msg']}"


@lru_cache(maxsize=1)
def load_settings() -> Settings:
    """Read the settings once per process; raise ConfigurationError with one line."""
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigurationError(describe_error(exc)) from None
    except SettingsError as exc:  # a value the environment source cannot even parse (JSON)
        raise ConfigurationError(f"invalid setting: {exc}") from None


def settings_or_exit(prog: str) -> Settings:
    """The settings, or (for an entry point) one line naming the bad variable and exit 2."""
    try:
        return load_settings()
    except ConfigurationError as exc:
        print(f"{prog}: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
