"""The case worker the engine benchmarks measure: the production worker (``worker.build_worker``:
same sandbox, task slots, cache and bytecode) with instant in-memory systems around it, so the
figures are the case engine's and Temporal's, not core banking's or Kafka's.

With ``--floor`` it runs ``bench.floor.FloorSleeper`` alone instead, on a plain SDK worker with
the same task slots and cache: the platform's floor beside the case.

Usage (started by ``bench.engine``): python -m bench.engine_worker --paid 2650.85 [--floor]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from temporalio.worker import Worker

from activities.case_activities import CaseActivities
from activities.contact_channels import ContactDirectorySimulator, ContactGatewaySimulator
from activities.core_banking import CoreBankingSimulator, LedgerPosition
from activities.esign import EnvelopeState, EnvelopeStatus, ESignatureSimulator
from bench.floor import FloorSleeper
from clients import connect_temporal
from schemas.outbound import CaseEvent
from settings import get_settings
from worker import build_worker, ensure_bytecode, metrics_runtime, worker_identity


@dataclass
class InstantBank(CoreBankingSimulator):
    """Knows every loan it is told about, and every borrower has paid ``paid`` so far."""

    paid: Decimal = Decimal(0)

    async def read_ledger(self, loan_id: str, since: date) -> LedgerPosition:
        return LedgerPosition(
            loan_id=loan_id, currency="CNY", since=since, paid_total=self.paid, last_paid_at=None
        )


class SigningProvider(ESignatureSimulator):
    """The borrower signs every envelope as soon as the provider is asked."""

    async def status(self, envelope_id: str) -> EnvelopeStatus:
        return EnvelopeStatus(
            envelope_id=envelope_id, state=EnvelopeState.SIGNED, signed_at=datetime.now(UTC)
        )


class DiscardingPublisher:
    async def publish(self, event: CaseEvent) -> None:
        return None


async def run(paid: Decimal, floor: bool) -> None:
    settings = get_settings()
    ensure_bytecode()
    client = await connect_temporal(
        settings, runtime=metrics_runtime(settings), identity=worker_identity()
    )
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    if floor:
        tuning = settings.worker
        async with Worker(
            client,
            task_queue=settings.temporal.task_queue,
            workflows=[FloorSleeper],
            max_cached_workflows=tuning.max_cached_workflows,
            max_concurrent_workflow_tasks=tuning.max_concurrent_workflow_tasks,
        ):
            print(f"polling as {client.identity}", flush=True)
            await stop.wait()
        return
    activities = CaseActivities(
        core_banking=InstantBank(mirror_reported_loans=True, paid=paid),
        directory=ContactDirectorySimulator(),
        gateway=ContactGatewaySimulator(),
        esign=SigningProvider(),
        publisher=DiscardingPublisher(),
        policy_file=settings.policy_file,
    )
    async with build_worker(client, settings, activities):
        print(f"polling as {client.identity}", flush=True)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--paid", default="0", help="what every ledger shows as paid")
    parser.add_argument("--floor", action="store_true", help="run bench.floor's trivial workflow")
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(run(Decimal(arguments.paid), arguments.floor))


if __name__ == "__main__":
    main()
