"""docker-compose.yml is checked against the settings the app reads and against the cluster
topology the stack runs (stack/cluster.py), so the shipped shape and the tested one cannot drift
(no Docker engine here)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from settings import Settings
from stack.cluster import SCHEMAS, SQL_PLUGIN, ClusterKafkaBroker, server_environment
from stack.postgres import MAX_CONNECTIONS
from stack.temporal import CLOSED_WORKFLOW_RETENTION
from workflows import search_attributes

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = (
    "worker", "stream", "codec", "desk", "core-banking", "esign", "contact", "webhooks",
)  # fmt: skip
INFRA_SERVICES = (
    "kafka-1", "kafka-2", "kafka-3", "kafka-topics", "postgresql", "temporal-schema",
    "temporal", "temporal-setup", "temporal-ui",
)  # fmt: skip
# Broker properties that name this machine's hosts, ports, paths or the node itself.
PER_NODE_PROPERTIES = {
    "node.id", "controller.quorum.voters", "listeners", "advertised.listeners", "log.dirs",
}  # fmt: skip
# Temporal server variables that say where things are rather than what the shape is.
PLACEMENT_VARIABLES = {
    "POSTGRES_SEEDS", "DB_PORT", "POSTGRES_PWD", "BIND_ON_IP", "TEMPORAL_BROADCAST_ADDRESS",
    "DYNAMIC_CONFIG_FILE_PATH", "LOG_LEVEL",
}  # fmt: skip


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def defaults() -> Settings:
    return Settings(_env_file=None)


def _image_tag(compose: dict, service: str) -> tuple[str, str]:
    image, _, tag = compose["services"][service]["image"].rpartition(":")
    return image, tag


def _brokers(compose: dict) -> list[str]:
    return sorted(name for name in compose["services"] if re.fullmatch(r"kafka-\d+", name))


def _app_env(compose: dict, service: str) -> dict[str, str]:
    """The service's variables as compose sets them when the user sets none of its own."""
    return {
        k: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(v))
        for k, v in compose["services"][service]["environment"].items()
    }


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
    assert services["temporal"]["environment"]["DB"] == SQL_PLUGIN


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

    advertised = {
        compose["services"][name]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
        for name in _brokers(compose)
    }
    servers = settings.kafka.bootstrap_servers.split(",")
    assert {f"PLAINTEXT://{server}" for server in servers} == advertised


@pytest.mark.parametrize("service", APP_SERVICES)
def test_bank_systems_are_reached_at_their_services(
    compose: dict, service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loopback defaults would point each container at itself: every URL names a service."""
    settings = _settings_from(_app_env(compose, service), monkeypatch)
    for name, url in (
        ("core-banking", settings.core_banking.url),
        ("esign", settings.esign.url),
        ("contact", settings.contact.url),
        ("webhooks", f"http://{settings.webhooks.host}:{settings.webhooks.port}"),
    ):
        assert url.startswith(f"http://{name}:"), (service, url)
        assert name in compose["services"]


def test_stream_web_port_is_published_per_replica(
    compose: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = compose["services"]["stream"]
    settings = _settings_from(_app_env(compose, "stream"), monkeypatch)
    port = settings.streams.web_port
    replicas = stream["deploy"]["replicas"]
    assert f"{port}-{port + replicas - 1}:{port}" in stream["ports"]


def test_topics_created_with_the_configured_partitions(
    compose: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    topics = _settings_from(_app_env(compose, "worker"), monkeypatch).kafka.topics
    script = compose["services"]["kafka-topics"]["command"][0]
    created = set(re.findall(r"[a-z]+\.[a-z.]+v1(?:\.dlq)?", script))
    expected = {*topics.inbound(), topics.case_events, *(topics.dlq(t) for t in topics.inbound())}
    assert created == expected
    assert f"--partitions {topics.partitions}" in script
    assert f"--replication-factor {topics.replication_factor}" in script


def test_search_attributes_match_the_workflow(compose: dict) -> None:
    script = compose["services"]["temporal-setup"]["command"][0]
    registered = dict(
        re.findall(r"(\w+)=(KeywordList|Keyword|Int|Datetime|Double|Bool|Text)\b", script)
    )
    indexed = {
        "KEYWORD": "Keyword",
        "INT": "Int",
        "DATETIME": "Datetime",
        "FLOAT": "Double",
        "BOOL": "Bool",
        "TEXT": "Text",
        "KEYWORD_LIST": "KeywordList",
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


# --- the cluster topology: same versions, same settings -------------------------------------


def test_same_versions_as_the_stack_builds(compose: dict, defaults: Settings) -> None:
    cluster = defaults.stack.cluster
    assert {_image_tag(compose, name) for name in _brokers(compose)} == {
        ("apache/kafka", defaults.stack.kafka_version)
    }
    assert _image_tag(compose, "kafka-topics") == ("apache/kafka", defaults.stack.kafka_version)
    assert _image_tag(compose, "temporal") == ("temporalio/server", cluster.temporal_version)
    for tools in ("temporal-schema", "temporal-setup"):
        assert _image_tag(compose, tools) == ("temporalio/admin-tools", cluster.temporal_version)
    assert _image_tag(compose, "temporal-ui") == ("temporalio/ui", cluster.temporal_ui_version)
    assert _image_tag(compose, "postgresql") == ("postgres", str(cluster.postgres_major))


def test_as_many_brokers_workers_and_stream_processors(compose: dict, defaults: Settings) -> None:
    cluster = defaults.stack.cluster
    services = compose["services"]
    assert len(_brokers(compose)) == len(cluster.kafka_brokers)
    assert services["worker"]["deploy"]["replicas"] == cluster.workers
    assert services["stream"]["deploy"]["replicas"] == cluster.stream_processors


def test_brokers_have_the_stacks_properties(compose: dict, defaults: Settings) -> None:
    """Every broker property the stack sets that is not about placement, with the same value;
    node ids 1..n in one quorum of all the brokers."""
    brokers = _brokers(compose)
    for node, name in enumerate(brokers, start=1):
        env = compose["services"][name]["environment"]
        properties = ClusterKafkaBroker(defaults, node).server_properties()
        shape = {k: str(v) for k, v in properties.items() if k not in PER_NODE_PROPERTIES}
        declared = {key: str(env.get("KAFKA_" + key.upper().replace(".", "_"))) for key in shape}
        assert declared == shape, name
        assert env["KAFKA_NODE_ID"] == str(node)
        voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
        assert [voter.split("@")[0] for voter in voters] == [
            str(n) for n in range(1, len(brokers) + 1)
        ]
    replication = ClusterKafkaBroker(defaults, 1).replication_properties()
    assert replication["default.replication.factor"] == defaults.stack.cluster.replication_factor
    assert replication["min.insync.replicas"] == defaults.stack.cluster.min_insync_replicas


def test_topics_are_replicated_like_the_stacks(compose: dict, defaults: Settings) -> None:
    cluster = defaults.stack.cluster
    script = compose["services"]["kafka-topics"]["command"][0]
    assert f"--replication-factor {cluster.replication_factor}" in script
    assert f"--config min.insync.replicas={cluster.min_insync_replicas}" in script


def test_temporal_server_configured_like_the_stacks(compose: dict, defaults: Settings) -> None:
    """The server image and the stack's build both render the server's embedded config template
    from these variables: the store, the databases and the shard count must agree."""
    stack_env = server_environment(defaults)
    compose_env = {k: str(v) for k, v in compose["services"]["temporal"]["environment"].items()}
    shape = {k: v for k, v in stack_env.items() if k not in PLACEMENT_VARIABLES}
    shape = {k: v for k, v in shape.items() if not k.endswith("_PORT")}
    assert {k: compose_env.get(k) for k in shape} == shape
    assert compose_env["NUM_HISTORY_SHARDS"] == str(defaults.stack.cluster.history_shards)
    assert int(compose_env["NUM_HISTORY_SHARDS"]) > 1
    mounts = compose["services"]["temporal"]["volumes"]
    assert f"./stack/temporal-dynamic-config.yaml:{compose_env['DYNAMIC_CONFIG_FILE_PATH']}:ro" in (
        mounts
    )
    postgres = compose["services"]["postgresql"]
    assert f"max_connections={MAX_CONNECTIONS}" in postgres["command"]
    assert postgres["environment"]["POSTGRES_USER"] == defaults.stack.cluster.postgres_user


def test_schema_steps_are_the_stacks(compose: dict) -> None:
    script = compose["services"]["temporal-schema"]["command"][0]
    assert f"--plugin {SQL_PLUGIN}" in script
    for database, schema in SCHEMAS.items():
        assert f"--db {database} create-database" in script
        assert f"--db {database} setup-schema -v 0.0" in script
        assert f"--db {database} update-schema --schema-name {schema}" in script


def test_namespace_retention_is_the_stacks(compose: dict) -> None:
    script = compose["services"]["temporal-setup"]["command"][0]
    hours = int(CLOSED_WORKFLOW_RETENTION.total_seconds() // 3600)
    assert f"--retention {hours}h" in script


def test_apps_bootstrap_from_every_broker_and_replicate(
    compose: dict, defaults: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings_from(_app_env(compose, "stream"), monkeypatch)
    assert len(settings.kafka.bootstrap_servers.split(",")) == len(_brokers(compose))
    assert settings.kafka.topics.replication_factor == defaults.stack.cluster.replication_factor
