"""The embedded stack: starts healthy, is configured as the project needs, stops cleanly,
and explains what went wrong when it cannot start."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client

from clients import connect_temporal
from settings import Settings
from stack.environment import settings_to_env
from stack.errors import ComponentUnhealthyError, PortInUseError
from stack.kafka import KafkaBroker, topic_partitions
from stack.orchestrator import INFRASTRUCTURE, Health, Stack
from stack.ports import port_is_free, split_host_port
from stack.processes import PidState, group_alive
from stack.temporal import CLOSED_WORKFLOW_RETENTION
from tests.integration.services_support import all_healthy, eventually
from workflows import search_attributes

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def infrastructure_only(settings_factory: Callable[..., Settings]) -> AsyncIterator[Stack]:
    """A stack of Kafka and Temporal alone, as `accord stack up kafka temporal` leaves it (the
    session's stack also runs the applications for the tests that need them)."""
    stack = Stack(settings_factory(), only=INFRASTRUCTURE)
    try:
        await stack.up()
        # Serving when `up` returns; supervisord calls it RUNNING after its first seconds.
        await eventually(
            lambda: all_healthy(stack), within=60, what="Kafka and Temporal past their start"
        )
        yield stack
    finally:
        await stack.down()


async def test_topics_exist_with_configured_partitions(embedded_stack: Stack) -> None:
    broker = KafkaBroker(embedded_stack.settings)
    async with broker.admin() as admin:
        described = await admin.describe_topics(list(topic_partitions(embedded_stack.settings)))

    partitions = {meta["topic"]: len(meta["partitions"]) for meta in described}
    topics = embedded_stack.settings.kafka.topics
    assert partitions == topic_partitions(embedded_stack.settings)
    assert set(partitions) >= {topics.case_events, *map(topics.dlq, topics.inbound())}


async def test_search_attributes_and_retention_registered(
    temporal_client: Client, stack_settings: Settings
) -> None:
    namespace = stack_settings.temporal.namespace
    listed = await temporal_client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    registered = {
        name: IndexedValueType.Name(value).removeprefix("INDEXED_VALUE_TYPE_")
        for name, value in listed.custom_attributes.items()
    }
    expected = {key.name: key.indexed_value_type.name for key in search_attributes.ALL}
    assert registered.items() >= expected.items()

    described = await temporal_client.workflow_service.describe_namespace(
        DescribeNamespaceRequest(namespace=namespace)
    )
    retention = described.config.workflow_execution_retention_ttl.ToTimedelta()
    assert retention == CLOSED_WORKFLOW_RETENTION


async def test_status_reports_every_component_healthy(infrastructure_only: Stack) -> None:
    statuses = await infrastructure_only.status()

    assert [s.name for s in statuses] == list(INFRASTRUCTURE)
    assert all(s.health is Health.HEALTHY and s.pid for s in statuses), statuses


async def test_bringing_up_a_subset_keeps_the_rest_in_status(infrastructure_only: Stack) -> None:
    # e.g. `accord simulate` restarting only the worker: status must still cover the stack.
    await Stack(infrastructure_only.settings, only=["temporal"]).up()
    assert Stack(infrastructure_only.settings).recorded_selection() == list(INFRASTRUCTURE)


def test_cli_status_exits_zero_for_a_running_stack(infrastructure_only: Stack) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACCORD_")}
    env |= settings_to_env(infrastructure_only.settings)
    result = subprocess.run(
        [sys.executable, "-c", "from cli.stack import stack; stack()", "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "kafka" in result.stdout and "temporal" in result.stdout
    assert "worker" not in result.stdout  # the last `up` selected kafka and temporal only


async def test_down_stops_everything_and_restart_keeps_workflows(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory()
    stack = Stack(settings, only=INFRASTRUCTURE)
    try:
        await stack.up()
        client = await connect_temporal(settings)
        handle = await client.start_workflow(
            "NoWorkerWorkflow",
            id="survives-restart",
            task_queue="nobody-polls",
            execution_timeout=timedelta(hours=1),
        )
        pids = {name: stack.supervisor.read_pid(name).pid for name in INFRASTRUCTURE}

        assert sorted(await stack.down()) == sorted(INFRASTRUCTURE)

        assert not any(group_alive(pid) for pid in pids.values()), pids
        for claim in (c for comp in stack.components for c in comp.port_claims()):
            assert port_is_free(claim.host, claim.port), claim
        assert all(stack.supervisor.state(n)[0] is PidState.STOPPED for n in INFRASTRUCTURE)
        assert await stack.down() == []  # idempotent

        stack = Stack(settings, only=["temporal"])  # Kafka's restart adds time, not coverage
        await stack.up()
        client = await connect_temporal(settings)
        described = await client.get_workflow_handle(handle.id).describe()
        assert described.id == "survives-restart"  # SQLite persistence across restarts
    finally:
        await Stack(settings, only=INFRASTRUCTURE).down()


async def test_port_taken_is_reported_with_the_setting_to_change(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory()
    host, port = split_host_port(settings.kafka.bootstrap_servers)
    with socket.socket() as squatter:
        squatter.bind((host, port))
        squatter.listen()
        stack = Stack(settings, only=["kafka"])

        with pytest.raises(PortInUseError) as raised:
            await stack.up()

    message = str(raised.value)
    assert str(port) in message
    assert "ACCORD_KAFKA__BOOTSTRAP_SERVERS" in message
    assert stack.supervisor.read_pid("kafka") is None  # nothing was started


async def test_component_that_dies_while_starting_reports_its_log_tail(
    settings_factory: Callable[..., Settings],
) -> None:
    # An initial heap larger than the maximum: the JVM refuses to start.
    settings = settings_factory(stack={"kafka_heap": "-Xms64m -Xmx16m"})
    stack = Stack(settings, only=["kafka"])

    with pytest.raises(ComponentUnhealthyError) as raised:
        await stack.up()

    message = str(raised.value)
    assert "kafka did not become healthy" in message
    assert "kafka.log" in message
    assert "heap" in message.lower()  # the JVM's own complaint, from the log tail
    assert stack.supervisor.read_pid("kafka") is None


async def test_a_dead_supervisor_leaves_nothing_that_looks_running(
    settings_factory: Callable[..., Settings],
) -> None:
    # supervisord killed with its socket and pid file left behind.
    settings = settings_factory()
    stack = Stack(settings, only=INFRASTRUCTURE)
    stack.supervisor.run_dir.mkdir(parents=True)
    exited = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await exited.wait()
    stack.supervisor.pid_file_path.write_text(str(exited.pid))
    stack.supervisor.socket.write_text("")

    statuses = await stack.status()

    assert all(s.health is Health.STOPPED and s.pid is None for s in statuses), statuses
    assert not stack.supervisor.running()
    assert await stack.down() == []


def test_children_read_back_the_same_settings(
    settings_factory: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_factory(kafka={"sasl_password": "s3cret"})
    for key in [key for key in os.environ if key.startswith("ACCORD_")]:
        monkeypatch.delenv(key)
    for key, value in settings_to_env(settings).items():
        monkeypatch.setenv(key, value)

    assert Settings(_env_file=None).model_dump() == settings.model_dump()
