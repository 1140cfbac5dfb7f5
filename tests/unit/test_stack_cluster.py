"""The cluster topology's wiring, without starting it: start order, per-instance settings, what
the children read back from the environment."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka.errors import NodeNotReadyError

from settings import Settings
from stack.cluster import (
    ClusterKafkaBroker,
    app_settings,
    cluster_components,
    server_environment,
    sql_tool_commands,
)
from stack.environment import settings_to_env
from stack.isolated import isolated_cluster_settings
from stack.orchestrator import Stack, Topology, parse_selection
from stack.ports import pick_free_ports_in

pytestmark = pytest.mark.unit


@pytest.fixture
def cluster_settings(tmp_path: Path) -> Settings:
    return isolated_cluster_settings(tmp_path)


def test_components_start_in_dependency_order(cluster_settings: Settings) -> None:
    phases = {c.name: c.phase for c in cluster_components(cluster_settings)}
    assert phases == {
        "postgresql": 0, "kafka-1": 0, "kafka-2": 0, "kafka-3": 0, "temporal": 1,
        "core-banking": 1, "esign": 1, "contact": 1, "webhooks": 1, "desk": 1,
        "temporal-ui": 2, "worker-1": 2, "worker-2": 2, "stream-1": 2, "stream-2": 2,
    }  # fmt: skip


def test_every_port_claimed_once(cluster_settings: Settings) -> None:
    claims = [
        (claim.host, claim.port)
        for component in cluster_components(cluster_settings)
        for claim in component.port_claims()
    ]
    assert len(claims) == len(set(claims))
    # Temporal keeps membership ports in a smallint column.
    assert all(port < 32768 for _, port in cluster_settings.stack.cluster.temporal_ports)


def test_apps_each_have_their_own_data_dir_and_every_broker(cluster_settings: Settings) -> None:
    apps = [c for c in cluster_components(cluster_settings) if c.phase == 2 and "ui" not in c.name]
    data_dirs = {c.settings.data_dir for c in apps}
    assert len(data_dirs) == len(apps)
    assert all(d.parent == cluster_settings.data_dir.resolve() for d in data_dirs)
    brokers = ",".join(cluster_settings.stack.cluster.kafka_brokers)
    assert {c.settings.kafka.bootstrap_servers for c in apps} == {brokers}
    assert {c.settings.kafka.topics.replication_factor for c in apps} == {3}
    web_ports = [c.settings.streams.web_port for c in apps if c.name.startswith("stream")]
    assert web_ports == cluster_settings.stack.cluster.stream_web_ports
    workers = [c.settings.worker for c in apps if c.name.startswith("worker")]
    assert [w.health_port for w in workers] == cluster_settings.stack.cluster.worker_health_ports
    assert [w.metrics_port for w in workers] == cluster_settings.stack.cluster.worker_metrics_ports


def test_children_read_the_same_settings_back(
    cluster_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in settings_to_env(cluster_settings).items():
        monkeypatch.setenv(key, value)
    read_back = Settings(_env_file=None)
    assert read_back.stack.cluster == cluster_settings.stack.cluster
    assert read_back.kafka == cluster_settings.kafka


def test_one_quorum_of_every_broker(cluster_settings: Settings) -> None:
    voters = {ClusterKafkaBroker(cluster_settings, n).quorum_voters() for n in (1, 2, 3)}
    assert len(voters) == 1
    (line,) = voters
    ports = cluster_settings.stack.cluster.kafka_controller_ports
    assert [voter.rsplit(":", 1)[1] for voter in line.split(",")] == [str(p) for p in ports]


def test_server_configuration_and_schema_steps(cluster_settings: Settings) -> None:
    env = server_environment(cluster_settings)
    assert env["NUM_HISTORY_SHARDS"] == "4"
    assert env["DB"] == "postgres12"
    assert env["DB_PORT"] == str(cluster_settings.stack.cluster.postgres_port)
    steps = [argv[argv.index("--db") + 1 :] for argv in sql_tool_commands(cluster_settings, "t")]
    assert steps == [
        ["temporal", "create-database"],
        ["temporal", "setup-schema", "-v", "0.0"],
        ["temporal", "update-schema", "--schema-name", "postgresql/v12/temporal"],
        ["temporal_visibility", "create-database"],
        ["temporal_visibility", "setup-schema", "-v", "0.0"],
        ["temporal_visibility", "update-schema", "--schema-name", "postgresql/v12/visibility"],
    ]


def test_selection_is_checked_against_the_topology(cluster_settings: Settings) -> None:
    stack = Stack(cluster_settings, only="kafka-2,stream-1", topology=Topology.CLUSTER)
    assert stack.selected == ["kafka-2", "stream-1"]
    with pytest.raises(Exception, match="unknown component"):
        Stack(cluster_settings, only="kafka", topology=Topology.CLUSTER)
    assert parse_selection(None) == [
        "kafka", "temporal", "worker", "stream", "core-banking", "esign", "contact", "webhooks",
        "desk",
    ]  # fmt: skip


def test_app_settings_leave_the_dev_defaults_alone() -> None:
    dev = Settings(_env_file=None)
    assert dev.kafka.topics.replication_factor == 1
    assert app_settings(dev).kafka.bootstrap_servers.count(",") == 2


def test_low_ports_are_free_and_low() -> None:
    ports = pick_free_ports_in(4, "127.0.0.1", 20_000, 32_767)
    assert len(set(ports)) == 4 and all(20_000 <= p <= 32_767 for p in ports)


class _AdminNotReadyOnce:
    """An admin client whose first metadata request reaches a broker not accepting connections
    yet; later ones see every broker."""

    def __init__(self, brokers: int) -> None:
        self.brokers, self.calls, self.topics_created = brokers, 0, False

    async def describe_cluster(self) -> dict[str, list[dict[str, int]]]:
        self.calls += 1
        if self.calls == 1:
            raise NodeNotReadyError("Attempt to send a request to node which is not ready")
        return {"brokers": [{"node_id": node} for node in range(1, self.brokers + 1)]}


async def test_a_broker_not_ready_yet_is_waited_for(
    cluster_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = ClusterKafkaBroker(cluster_settings, 1)
    admin = _AdminNotReadyOnce(len(cluster_settings.stack.cluster.kafka_brokers))

    @contextlib.asynccontextmanager
    async def fake_admin() -> AsyncIterator[_AdminNotReadyOnce]:
        yield admin

    async def topics_created(*args: object, **kwargs: object) -> None:
        admin.topics_created = True

    monkeypatch.setattr(broker, "admin", fake_admin)
    monkeypatch.setattr("stack.cluster.ensure_topics", topics_created)
    await broker.bootstrap()
    assert admin.calls == 2 and admin.topics_created
