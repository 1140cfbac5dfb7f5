"""Accord's own processes under the stack: the Temporal worker and the faust stream processor.

Both run the production entry points (`accord worker`, `accord stream`) with the stack's
settings passed down as ACCORD_* environment variables.
"""

from __future__ import annotations

import asyncio
import sys

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import PollerInfo, TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

from settings import Settings
from stack.component import Component
from stack.environment import child_env
from stack.errors import StackError
from stack.ports import PortClaim, split_host_port
from stack.temporal import RPC_TIMEOUT, connect

HTTP_TIMEOUT_SECONDS = 3.0


class TemporalWorker(Component):
    name = "worker"
    phase = 1
    startup_timeout = 60.0

    @property
    def address(self) -> str:
        temporal = self.settings.temporal
        return f"task queue {temporal.task_queue} @ {temporal.address}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "cli.main", "worker"]

    def env(self) -> dict[str, str]:
        return child_env(self.settings)

    def port_claims(self) -> list[PortClaim]:
        worker = self.settings.worker
        return [
            PortClaim(self.name, worker.listen_host, worker.health_port, "worker.health_port"),
            PortClaim(self.name, worker.listen_host, worker.metrics_port, "worker.metrics_port"),
        ]

    async def probe(self) -> None:
        """The worker's own health endpoint: healthy once this very process has polled (a dead
        worker's poller entry lingers on the task queue for minutes)."""
        worker = self.settings.worker
        status = await http_get_status(worker.listen_host, worker.health_port, "/health")
        if status != 200:
            raise StackError(f"worker health answered HTTP {status} (not polling yet)")


async def workflow_pollers(settings: Settings) -> list[PollerInfo]:
    """Who polls the case task queue for workflow tasks (identity ``<pid>@<host>``)."""
    temporal = settings.temporal
    client = await connect(temporal.address, temporal.namespace)
    described = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=temporal.namespace,
            task_queue=TaskQueue(name=temporal.task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        ),
        timeout=RPC_TIMEOUT,
    )
    return list(described.pollers)


class StreamProcessor(Component):
    name = "stream"
    phase = 1
    startup_timeout = 90.0

    @property
    def web_host(self) -> str:
        # The whole embedded stack runs on one host: the one its Temporal server listens on.
        return split_host_port(self.settings.temporal.address)[0]

    @property
    def address(self) -> str:
        return f"http://{self.web_host}:{self.settings.streams.web_port}/"

    def port_claims(self) -> list[PortClaim]:
        return [
            PortClaim(self.name, self.web_host, self.settings.streams.web_port, "streams.web_port")
        ]

    def command(self) -> list[str]:
        return [sys.executable, "-m", "cli.main", "stream"]

    def env(self) -> dict[str, str]:
        return child_env(self.settings)

    async def probe(self) -> None:
        status = await http_get_status(self.web_host, self.settings.streams.web_port, "/")
        if status != 200:
            raise StackError(f"faust web answered HTTP {status} on /")


async def http_get_status(host: str, port: int, path: str) -> int:
    """The status code of a plain HTTP/1.0 GET (no client library for one line of protocol)."""
    async with asyncio.timeout(HTTP_TIMEOUT_SECONDS):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n".encode())
            await writer.drain()
            status_line = (await reader.readline()).decode("latin-1")
        finally:
            writer.close()
    parts = status_line.split()
    if len(parts) < 2 or not parts[1].isdigit():
        raise StackError(f"not an HTTP response: {status_line!r}")
    return int(parts[1])
