"""``REDIS_URL``: one server or Sentinel, refused at start when unusable; what each user gets."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from core import redisconn
from core.settings import Settings
from worker.celery_app import celery_config

SENTINELS = "sentinel://10.0.0.1:26379;sentinel://10.0.0.2:26380;sentinel://10.0.0.3"


def test_a_sentinel_url_names_every_sentinel_and_the_database() -> None:
    target = Settings(redis_url=SENTINELS + "/3").redis_target
    assert target.is_sentinel
    assert target.sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26380), ("10.0.0.3", 26379))
    assert target.db == 3


def test_a_plain_url_is_one_server() -> None:
    target = Settings(redis_url="redis://cache:6380/2").redis_target
    assert not target.is_sentinel and target.db == 2


@pytest.mark.parametrize("bad", [
    "", "http://h:6379", "sentinel://", "sentinel://h:1;redis://h:2", "sentinel://h:70000",
    "sentinel://h/x", "sentinel://h:1/1;sentinel://h:2/2", "redis://h/db", "h:6379",
])
def test_an_unusable_url_is_refused_without_showing_it(bad: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(redis_url=bad)
    message = caught.value.errors()[0]["msg"]
    assert "not a usable Redis URL" in message


def test_the_password_is_never_in_the_refusal() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(redis_url="sentinel://:hunter2@h:1/1;sentinel://h:2/2")
    assert "hunter2" not in caught.value.errors()[0]["msg"]


def test_celery_uses_the_sentinel_transport_with_the_master_and_the_sentinels_password() -> None:
    settings = Settings(redis_url=SENTINELS, redis_sentinel_master="orders",
                        redis_password=SecretStr("data-pw"),
                        redis_sentinel_password=SecretStr("sentinel-pw"))
    config = celery_config(settings)
    assert config["broker_transport"] == "worker.ops.broker:SentinelTransport"
    assert config["broker_url"].split(";")[0] == "sentinel://:data-pw@10.0.0.1:26379/0"
    assert config["result_backend"] == config["broker_url"]
    for options in ("broker_transport_options", "result_backend_transport_options"):
        assert config[options]["master_name"] == "orders"
        assert config[options]["sentinel_kwargs"]["password"] == "sentinel-pw"
    beat = config["redbeat_redis_options"]
    assert config["redbeat_redis_url"].startswith("redis-sentinel")
    assert beat["service_name"] == "orders" and beat["password"] == "data-pw"
    assert beat["sentinels"][1] == ["10.0.0.2", 26380]


def test_a_plain_url_keeps_the_restart_proof_redis_transport() -> None:
    config = celery_config(Settings(redis_url="redis://127.0.0.1:6379/0"))
    assert config["broker_transport"] == "worker.ops.broker:Transport"
    assert config["broker_url"] == "redis://127.0.0.1:6379/0"
    assert "master_name" not in config["broker_transport_options"]
    assert "redbeat_redis_options" not in config


def test_a_password_setting_goes_into_a_plain_url() -> None:
    settings = Settings(redis_url="redis://cache:6379/1", redis_password=SecretStr("p@ss"))
    url, _ = redisconn.celery_urls(settings)
    assert url == "redis://:p%40ss@cache:6379/1"


def test_replicas_are_waited_for_by_default_only_with_sentinel() -> None:
    assert redisconn.wait_replicas(Settings(redis_url=SENTINELS)) == 1
    assert redisconn.wait_replicas(Settings(redis_url="redis://h:6379/0")) == 0
    assert redisconn.wait_replicas(Settings(redis_url="redis://h:6379/0",
                                            redis_wait_replicas=2)) == 2
