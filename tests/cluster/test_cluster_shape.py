"""The cluster topology is the production shape: Temporal on PostgreSQL with several history
shards and the case search attributes, every topic on three brokers with two in sync, two
workers and two stream processors sharing the work, the UI talking to the server."""

from __future__ import annotations

import aiohttp
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.api.workflowservice.v1 import GetClusterInfoRequest
from temporalio.client import Client

from clients import kafka_client_options
from settings import Settings
from stack.apps import workflow_pollers
from stack.kafka import topic_partitions
from stack.orchestrator import Health, Stack
from stack.temporal import SEARCH_ATTRIBUTES
from tests.cluster.conftest import assigned_partitions
from tests.integration.streams_support import accord, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.cluster]


async def test_every_component_is_healthy(cluster: Stack) -> None:
    statuses = await cluster.status()
    assert [s.name for s in statuses] == [
        "postgresql", "kafka-1", "kafka-2", "kafka-3", "temporal", "temporal-ui",
        "core-banking", "esign", "contact", "webhooks",
        "worker-1", "worker-2", "stream-1", "stream-2",
    ]  # fmt: skip
    assert all(s.health is Health.HEALTHY for s in statuses), statuses


def test_cli_reports_the_cluster(cluster: Stack) -> None:
    shown = accord(cluster.settings, "stack", "status")  # the recorded topology: cluster
    assert shown.returncode == 0, shown.stdout + shown.stderr
    for name in ("postgresql", "kafka-3", "temporal-ui", "worker-2", "stream-2"):
        assert name in shown.stdout


async def test_temporal_runs_on_postgresql_with_several_shards(
    cluster_client: Client, cluster_settings: Settings
) -> None:
    info = await cluster_client.workflow_service.get_cluster_info(GetClusterInfoRequest())
    assert info.history_shard_count == cluster_settings.stack.cluster.history_shards > 1
    assert info.persistence_store == "postgres12"
    assert info.visibility_store == "postgres12"
    assert info.server_version == cluster_settings.stack.cluster.temporal_version

    listed = await cluster_client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=cluster_settings.temporal.namespace)
    )
    registered = {
        name: IndexedValueType.Name(value).removeprefix("INDEXED_VALUE_TYPE_")
        for name, value in listed.custom_attributes.items()
    }
    assert registered == {name: type_name.upper() for name, type_name in SEARCH_ATTRIBUTES.items()}


async def test_every_topic_has_three_copies_two_in_sync(cluster_settings: Settings) -> None:
    """Accord's topics, the ones faust creates and Kafka's own (consumer offsets)."""
    cluster = cluster_settings.stack.cluster
    admin = AIOKafkaAdminClient(**kafka_client_options(cluster_settings.kafka))
    await admin.start()
    try:
        names = await admin.list_topics()
        assert set(topic_partitions(cluster_settings)) <= set(names)
        assert "__consumer_offsets" in names  # the stream processors' group exists
        described = await admin.describe_topics(names)
        configs = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
        )
    finally:
        await admin.close()
    for topic in described:
        replicas = {len(p["replicas"]) for p in topic["partitions"]}
        assert replicas == {cluster.replication_factor}, topic["topic"]
    min_insync = {
        resource[3]: value
        for response in configs
        for resource in response.resources
        for name, value, *_ in resource[4]
        if name == "min.insync.replicas"
    }
    assert set(min_insync) == set(names)
    assert set(min_insync.values()) == {str(cluster.min_insync_replicas)}, min_insync


async def test_two_workers_poll_and_two_processors_share_the_partitions(
    cluster: Stack, cluster_settings: Settings
) -> None:
    pollers = {poller.identity for poller in await workflow_pollers(cluster_settings)}
    worker_pids = {cluster.supervisor.read_pid(f"worker-{n}").pid for n in (1, 2)}  # type: ignore[union-attr]
    assert {identity.split("@")[0] for identity in pollers} >= {str(pid) for pid in worker_pids}

    partitions = cluster_settings.kafka.topics.partitions

    async def shared() -> bool:
        found = await assigned_partitions(cluster_settings)
        everything = set().union(*found.values())
        inbound = cluster_settings.kafka.topics.inbound()
        wanted = {f"{topic}:{p}" for topic in inbound for p in range(partitions)}
        return all(found.values()) and wanted <= everything

    await wait_until(shared, within=60, what="both stream processors holding partitions")


async def test_the_ui_serves_and_reaches_the_server(cluster_settings: Settings) -> None:
    host = cluster_settings.temporal.address.split(":")[0]
    base = f"http://{host}:{cluster_settings.temporal.ui_port}"
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/") as page:
            assert page.status == 200
            assert "<html" in (await page.text()).lower()
        async with session.get(f"{base}/api/v1/namespaces") as reply:
            assert reply.status == 200, await reply.text()
            listed = await reply.json()
    names = {ns["namespaceInfo"]["name"] for ns in listed["namespaces"]}
    assert cluster_settings.temporal.namespace in names
