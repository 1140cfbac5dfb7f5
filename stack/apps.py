"""Accord's own processes under the stack: the Temporal worker and the faust stream processor.

Both run the production entry points (`accord worker`, `accord stream`) with the stack's
settings passed down as ACCORD_* environment variables; each is probed on its own endpoint.
"""

from __future__ import annotations

import sys

import httpx
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

    @property
    def health_url(self) -> str:
        worker = self.settings.worker
        return f"http://{worker.listen_host}:{worker.health_port}/health"

    def port_claims(self) -> list[PortClaim]:
        worker = self.settings.worker
        return [
            PortClaim(self.name, worker.listen_host, worker.health_port, "worker.health_port"),
            PortClaim(self.name, worker.listen_host, worker.metrics_port, "worker.metrics_port"),
        ]

    async def probe(self) -> None:
        """The worker's own health endpoint: healthy once this very process has polled (a dead
        worker's poller entry lingers on the task queue for minutes)."""
        from stack.services import probe_health

        await probe_health(self.health_url, "worker")


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
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_SECONDS) as client:
            answer = await client.get(f"{self.address}")
        if answer.status_code != 200:
            raise StackError(f"faust web answered HTTP {answer.status_code} on /")
