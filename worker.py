"""The Temporal worker entry point: ``accord worker``."""

from __future__ import annotations

import asyncio
import logging

from temporalio.client import Client
from temporalio.worker import Worker

from activities.case_activities import CaseActivities
from activities.contact_channels import ContactDirectorySimulator, ContactGatewaySimulator
from activities.core_banking import CoreBankingSimulator
from activities.decide import DECISION_ACTIVITIES
from activities.esign import ESignatureSimulator
from activities.publisher import KafkaCaseEventPublisher
from clients import connect_temporal
from settings import Settings, get_settings
from workflows.case import CaseWorkflow

log = logging.getLogger("accord.worker")


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
    # Core banking, contact channels and e-signature have only simulators so far: the bank's
    # adapters implement the same interfaces (activities/*.py) and are chosen here.
    activities = CaseActivities(
        core_banking=CoreBankingSimulator(mirror_reported_loans=True),
        directory=ContactDirectorySimulator(),
        gateway=ContactGatewaySimulator(),
        esign=ESignatureSimulator(),
        publisher=publisher,
        policy_file=settings.policy_file,
    )
    try:
        worker = build_worker(client, settings, activities)
        log.info("worker polling task queue %s", settings.temporal.task_queue)
        await worker.run()
    finally:
        await publisher.stop()


def main() -> None:
    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    asyncio.run(run_worker(settings))
