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
import gc
import json
import logging
import signal
import time
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
from worker import (
    build_worker,
    ensure_bytecode,
    freeze_startup_objects,
    metrics_runtime,
    worker_identity,
)


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


GC_REPORT = "collector pauses "
"""The prefix of the line the worker prints on SIGUSR1 (``bench.engine.BenchWorker``)."""


class CollectorPauses:
    """The cycle collector's pauses in this process since the last report, per generation: a
    full collection walks every tracked object with the GIL held, so every workflow task waits
    for it. Printed on SIGUSR1 as ``GC_REPORT`` + JSON ``{generation: [count, total ms, max
    ms]}``."""

    def __init__(self) -> None:
        self._began = 0.0
        self._pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        gc.callbacks.append(self._observe)
        loop.add_signal_handler(signal.SIGUSR1, self.report)

    def _observe(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self._pauses[info["generation"]].append((time.perf_counter() - self._began) * 1000)

    def report(self) -> None:
        pauses, self._pauses = self._pauses, {0: [], 1: [], 2: []}
        summary = {
            generation: [len(ms), round(sum(ms), 1), round(max(ms, default=0.0), 1)]
            for generation, ms in pauses.items()
        }
        print(GC_REPORT + json.dumps(summary), flush=True)


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
    CollectorPauses().install(asyncio.get_running_loop())
    if floor:
        tuning = settings.worker
        plain = Worker(
            client,
            task_queue=settings.temporal.task_queue,
            workflows=[FloorSleeper],
            max_cached_workflows=tuning.max_cached_workflows,
            max_concurrent_workflow_tasks=tuning.max_concurrent_workflow_tasks,
        )
        freeze_startup_objects()  # as the production worker does: the same process, the floor
        async with plain:
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
    worker = build_worker(client, settings, activities)
    freeze_startup_objects()
    async with worker:
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
