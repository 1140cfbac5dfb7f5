"""docker-compose.yml is checked against the settings the app reads (no Docker engine here)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from settings import Settings
from workflows import search_attributes

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = ("worker", "stream", "codec")
INFRA_SERVICES = ("kafka", "kafka-topics", "postgresql", "temporal", "temporal-ui")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _app_env(compose: dict, service: str) -> dict[str, str]:
    return {k: str(v) for k, v in compose["services"][service]["environment"].items()}


def _settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings(_env_file=None)


def _field_exists(model: type[BaseModel], path: list[str]) -> bool:
    field = model.model_fields.get(path[0])
    if field is None:
        return False
    if len(path) == 1:
        return True
    annotation = field.annotation
    return (
        isinstance(annotation, type)
        and issubclass(annotation, BaseModel)
        and _field_exists(annotation, path[1:])
    )


def test_every_service_the_app_needs_exists(compose: dict) -> None:
    services = compose["services"]
    for name in APP_SERVICES + INFRA_SERVICES:
        assert name in services, f"docker-compose.yml lacks service {name!r}"
    assert services["temporal"]["environment"]["DB"].startswith("postgres")


@pytest.mark.parametrize("service", APP_SERVICES)
def test_every_accord_variable_is_a_real_setting(compose: dict, service: str) -> None:
    for key in _app_env(compose, service):
        assert key.startswith("ACCORD_"), key
        path = key.removeprefix("ACCORD_").lower().split("__")
        assert _field_exists(Settings, path), f"{service}: {key} is not read by settings.py"


@pytest.mark.parametrize("service", APP_SERVICES)
def test_connection_settings_point_at_compose_services(
    compose: dict, service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _app_env(compose, service)
    for required in ("ACCORD_TEMPORAL__ADDRESS", "ACCORD_KAFKA__BOOTSTRAP_SERVERS"):
        assert required in env, f"{service}: {required} must be set (the defaults are loopback)"
    settings = _settings_from(env, monkeypatch)

    temporal_host, temporal_port = settings.temporal.address.split(":")
    assert temporal_host in compose["services"]
    assert f"{temporal_port}:{temporal_port}" in compose["services"]["temporal"]["ports"]

    kafka_env = compose["services"]["kafka"]["environment"]
    for server in settings.kafka.bootstrap_servers.split(","):
        assert f"PLAINTEXT://{server}" in kafka_env["KAFKA_ADVERTISED_LISTENERS"].split(",")


def test_stream_web_port_is_published(compose: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings_from(_app_env(compose, "stream"), monkeypatch)
    port = settings.streams.web_port
    assert f"{port}:{port}" in compose["services"]["stream"]["ports"]


def test_topics_created_with_the_configured_partitions(
    compose: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    topics = _settings_from(_app_env(compose, "worker"), monkeypatch).kafka.topics
    script = compose["services"]["kafka-topics"]["command"][0]
    created = set(re.findall(r"[a-z]+\.[a-z.]+v1(?:\.dlq)?", script))
    expected = {*topics.inbound(), topics.case_events, *(topics.dlq(t) for t in topics.inbound())}
    assert created == expected
    assert f"--partitions {topics.partitions}" in script


def test_search_attributes_match_the_workflow(compose: dict) -> None:
    script = compose["services"]["temporal-search-attributes"]["command"][0]
    registered = dict(re.findall(r"(\w+)=(Keyword|Int|Datetime|Double|Bool|Text)\b", script))
    indexed = {
        "KEYWORD": "Keyword",
        "INT": "Int",
        "DATETIME": "Datetime",
        "FLOAT": "Double",
        "BOOL": "Bool",
        "TEXT": "Text",
    }
    expected = {key.name: indexed[key.indexed_value_type.name] for key in search_attributes.ALL}
    assert registered == expected


def test_payload_encryption_is_shared_and_the_ui_can_decode(
    compose: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = {
        service: _app_env(compose, service).get("ACCORD_ENCRYPTION__KEY")
        for service in APP_SERVICES
    }
    assert len(set(keys.values())) == 1 and None not in keys.values(), keys
    codec = _settings_from(_app_env(compose, "codec"), monkeypatch).encryption
    ui_env = compose["services"]["temporal-ui"]["environment"]
    assert ui_env["TEMPORAL_CODEC_ENDPOINT"].endswith(f":{codec.codec_server_port}")
    assert (
        f"{codec.codec_server_port}:{codec.codec_server_port}"
        in compose["services"]["codec"]["ports"]
    )
    assert codec.ui_origin in ui_env["TEMPORAL_CORS_ORIGINS"].split(",")
