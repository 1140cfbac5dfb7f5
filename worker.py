"""The Temporal worker entry point: ``accord worker``."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from activities.case_activities import CaseActivities
from activities.decide import DECISION_ACTIVITIES
from activities.external import http_systems, policy_registry
from activities.publisher import KafkaCaseEventPublisher
from clients import connect_temporal
from services.health import health_endpoint
from settings import Settings, get_settings
from workflows.case import CaseWorkflow

log = logging.getLogger("accord.worker")
HEALTH_RPC_TIMEOUT = timedelta(seconds=2)


def build_worker(client: Client, settings: Settings, activities: CaseActivities) -> Worker:
    return Worker(
        client,
        task_queue=settings.temporal.task_queue,
        workflows=[CaseWorkflow],
        activities=[*activities.all(), *DECISION_ACTIVITIES],
        max_cached_workflows=settings.temporal.max_cached_workflows,
    )


async def run_worker(settings: Settings) -> None:
    client = await connect_temporal(settings)
    publisher = KafkaCaseEventPublisher(settings.kafka)
    await publisher.start()
    # Core banking, contact and e-signature over HTTP, at the URLs in settings: the bank's own
    # systems, or the embedded services `accord stack up` runs.
    systems = http_systems(settings)
    activities = CaseActivities(
        core_banking=systems.core_banking,
        directory=systems.directory,
        gateway=systems.gateway,
        esign=systems.esign,
        publisher=publisher,
        policy_file=settings.policy_file,
        policies=policy_registry(settings),
    )
    worker = build_worker(client, settings, activities)

    async def healthy() -> str | None:
        if not worker.is_running or worker.is_shutdown:
            return "the worker is not running"
        if not await client.service_client.check_health(timeout=HEALTH_RPC_TIMEOUT):
            return "Temporal does not answer its health check"
        return None

    health = settings.worker
    try:
        async with health_endpoint("worker", health.health_host, health.health_port, healthy):
            log.info("worker polling task queue %s", settings.temporal.task_queue)
            await worker.run()
    finally:
        await publisher.stop()
        await systems.aclose()


def main() -> None:
    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request is noise
    asyncio.run(run_worker(settings))
