"""The Temporal worker entry point: ``accord worker``."""

from __future__ import annotations

import asyncio
import logging

from temporalio.worker import Worker

from clients import connect_temporal
from settings import Settings, get_settings
from workflows.case import CaseWorkflow

log = logging.getLogger("accord.worker")


def build_worker(client, settings: Settings) -> Worker:
    return Worker(
        client,
        task_queue=settings.temporal.task_queue,
        workflows=[CaseWorkflow],
        activities=[],
        max_cached_workflows=settings.temporal.max_cached_workflows,
    )


async def run_worker(settings: Settings) -> None:
    client = await connect_temporal(settings)
    worker = build_worker(client, settings)
    log.info("worker polling task queue %s", settings.temporal.task_queue)
    await worker.run()


def main() -> None:
    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    asyncio.run(run_worker(settings))
