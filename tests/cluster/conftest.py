"""Cluster-topology fixtures: the production shape (stack/cluster.py) started once per session by
the same code as `accord stack up --topology cluster`, on fresh ports, and stopped at the end.

Select these tests with ``-m cluster`` (or leave them out with ``-m "not cluster"``); they need
the Go builds in the user cache (`accord stack fetch --topology cluster`) and PostgreSQL.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from temporalio.client import Client

from clients import connect_temporal
from settings import Settings
from stack.isolated import isolated_cluster_settings
from stack.orchestrator import Stack, Topology
from stack.ports import split_host_port
from stack.processes import group_alive
from streams.app import HEALTH_PATH
from tests.integration.conftest import midday_time_zone
from tests.integration.streams_support import applied_event_ids, wait_for_applied, wait_until

CLUSTER_NAMESPACE = "accord-cluster-it"


def cluster_data_dir() -> Path:
    """A fresh data dir PostgreSQL's service user can enter when the tests run as root."""
    folder = Path(tempfile.mkdtemp(prefix="accord-cluster-"))
    folder.chmod(0o711)
    return folder


@pytest.fixture(scope="package")
async def cluster() -> AsyncIterator[Stack]:
    """Every cluster component running and healthy, for the tests of this folder only (stopped
    after them, not idling through the other tiers); a killed processor's partitions move after
    ``session_timeout_seconds``, so it is short here."""
    data_dir = cluster_data_dir()
    settings = isolated_cluster_settings(
        data_dir,
        log_level="INFO",
        temporal={"namespace": CLUSTER_NAMESPACE},
        streams={"session_timeout_seconds": 10.0, "retry_max_seconds": 2.0},
        core_banking={"contact_time_zone": midday_time_zone()},
    )
    running = Stack(settings, topology=Topology.CLUSTER)
    try:
        await running.up()
        yield running
    finally:
        await running.down()
        if not os.environ.get("ACCORD_KEEP_CLUSTER"):
            shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="package")
def cluster_settings(cluster: Stack) -> Settings:
    return cluster.settings


@pytest.fixture(scope="package")
async def cluster_client(cluster_settings: Settings) -> Client:
    return await connect_temporal(cluster_settings)


async def kill(stack: Stack, name: str) -> None:
    """SIGKILL a component's whole process group: no shutdown, no final commit or flush."""
    record = stack.supervisor.read_pid(name)
    assert record is not None, f"{name} is not running"
    os.killpg(record.pid, signal.SIGKILL)

    async def gone() -> bool:
        return not group_alive(record.pid)

    await wait_until(gone, within=10, what=f"{name} killed")


async def restart(stack: Stack, *names: str) -> None:
    """Start the named components again (stale pid files are cleaned) and wait until healthy."""
    await Stack(stack.settings, only=list(names), topology=Topology.CLUSTER).up()


def log_tails(stack: Stack, *names: str) -> str:
    return "\n".join(
        f"--- {name} ---\n{stack.supervisor.log_tail(name, lines=15)}" for name in names
    )


async def assigned_partitions(settings: Settings) -> dict[int, set[str]]:
    """Each stream processor's inbound partitions (``topic:partition``) by web port; empty while
    it rebalances or does not answer."""
    host = split_host_port(settings.temporal.address)[0]
    found: dict[int, set[str]] = {}
    async with aiohttp.ClientSession() as session:
        for port in settings.stack.cluster.stream_web_ports:
            try:
                async with session.get(f"http://{host}:{port}{HEALTH_PATH}") as reply:
                    health = await reply.json()
            except aiohttp.ClientError:
                found[port] = set()
                continue
            found[port] = set() if health["rebalancing"] else set(health["assigned_partitions"])
    return found


async def wait_for_applied_or_explain(
    stack: Stack, client: Client, expected: dict[str, set[str]], *, within: float
) -> None:
    """``wait_for_applied``, failing with what a few pending cases miss and what the stream
    processors logged last."""
    try:
        await wait_for_applied(client, expected, within=within)
    except AssertionError as error:
        missing = {}
        for case_id in sorted(expected)[:200]:
            applied = await applied_event_ids(client, case_id)
            if applied != expected[case_id]:
                missing[case_id] = sorted(expected[case_id] - (applied or set()))
            if len(missing) == 5:
                break
        names = [c.name for c in stack.components if c.name.startswith(("stream", "worker"))]
        assigned = await assigned_partitions(stack.settings)
        raise AssertionError(
            f"{error}\nmissing: {missing}\nassigned by web port: {assigned}\n"
            f"{log_tails(stack, *names)}"
        ) from None
