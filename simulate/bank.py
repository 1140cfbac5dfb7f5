"""The simulated bank's case worker: ``python -m simulate.bank``.

The production worker (``worker.build_worker``) with the parts the simulation plays wired to it:
core banking's ledger is fed from ``loan.payment.v1`` (as a real bank's ledger and its payment
events agree), and the e-signature provider confirms what the borrower signed. The stack's
simulators alone cannot do that: their state lives in the worker process, out of the borrowers'
reach. Run it instead of the stack's worker (same task queue), never next to it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaConsumer
from pydantic import ValidationError
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from activities.case_activities import CaseActivities
from activities.contact_channels import ContactDirectorySimulator, ContactGatewaySimulator
from activities.core_banking import CoreBankingSimulator
from activities.esign import EnvelopeState, EnvelopeStatus, ESignatureSimulator
from activities.publisher import KafkaCaseEventPublisher
from clients import connect_temporal, kafka_client_options
from schemas.events import LoanPayment
from settings import Settings, get_settings
from worker import build_worker

log = logging.getLogger("accord.simulate.bank")
# Finer than the SDK's default buckets, so p50/p99 of a benchmark mean something.
LATENCY_BUCKETS_MS = (
    1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750,
    1_000, 1_500, 2_000, 3_000, 5_000, 10_000, 30_000, 60_000,
)  # fmt: skip
LATENCY_METRICS = (
    "workflow_task_execution_latency",
    "workflow_task_schedule_to_start_latency",
    "workflow_task_replay_latency",
    "workflow_endtoend_latency",
    "activity_execution_latency",
    "activity_schedule_to_start_latency",
)


class ConfirmingESignature(ESignatureSimulator):
    """The case asks for the status only after the provider's callback was relayed to it (the
    ``sign`` update), and in the simulation only a borrower who signed triggers that callback."""

    async def status(self, envelope_id: str) -> EnvelopeStatus:
        status = await super().status(envelope_id)
        if status.state is EnvelopeState.SENT:
            # No signed_at: the case takes its own clock, which may be compressed.
            status = EnvelopeStatus(envelope_id=envelope_id, state=EnvelopeState.SIGNED)
            self.envelopes[envelope_id] = status
        return status


async def feed_ledger(settings: Settings, core_banking: CoreBankingSimulator) -> None:
    """Every payment on the topic, from the beginning, into the ledger (no consumer group: the
    ledger is in memory, so a restarted bank re-reads the whole topic)."""
    consumer = AIOKafkaConsumer(
        settings.kafka.topics.payment,
        group_id=None,
        auto_offset_reset="earliest",
        **kafka_client_options(settings.kafka),
    )
    await consumer.start()
    try:
        async for message in consumer:
            try:
                payment = LoanPayment.model_validate_json(message.value or b"")
            except ValidationError:
                continue  # the stream processor dead-letters it; the ledger never saw it
            core_banking.record_payment(payment.loan_id, payment.amount, payment.paid_at)
    finally:
        await consumer.stop()


async def run_bank(settings: Settings) -> None:
    client = await connect_temporal(settings)
    publisher = KafkaCaseEventPublisher(settings.kafka)
    await publisher.start()
    core_banking = CoreBankingSimulator(mirror_reported_loans=True)
    activities = CaseActivities(
        core_banking=core_banking,
        directory=ContactDirectorySimulator(),
        gateway=ContactGatewaySimulator(),
        esign=ConfirmingESignature(),
        publisher=publisher,
        policy_file=settings.policy_file,
    )
    ledger = asyncio.create_task(feed_ledger(settings, core_banking))
    try:
        worker = build_worker(client, settings, activities)
        log.info("simulated bank polling task queue %s", settings.temporal.task_queue)
        await worker.run()
    finally:
        ledger.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ledger
        await publisher.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--metrics", metavar="HOST:PORT", help="serve the SDK's Prometheus metrics here"
    )
    arguments = parser.parse_args()
    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    if arguments.metrics:
        buckets = {name: LATENCY_BUCKETS_MS for name in LATENCY_METRICS}
        telemetry = TelemetryConfig(
            metrics=PrometheusConfig(
                bind_address=arguments.metrics, histogram_bucket_overrides=buckets
            )
        )
        Runtime.set_default(Runtime(telemetry=telemetry), error_if_already_set=True)
    asyncio.run(run_bank(settings))


if __name__ == "__main__":
    main()
