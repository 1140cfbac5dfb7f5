"""The least a sleeping case can be: a trivial workflow that sleeps until its checkpoint, then
moves its ``NextCheckpointAt`` and sleeps again — one timer, one search-attribute upsert and one
workflow task per firing, under the SDK's default sandbox, nothing else.

``python -m bench.engine sleepers --workflow floor`` (and ``memory --workflow floor``) run the
benchmark with it instead of the case workflow, on the same server, worker settings and timing,
so what a firing (or a payment to a cached case) costs the platform on this machine is measured
beside what it costs a case.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from schemas.events import LoanPayment
    from workflows.search_attributes import CASE_STAGE, NEXT_CHECKPOINT_AT

AFTER_FIRING = timedelta(days=3650)


@workflow.defn
class FloorSleeper:
    @workflow.run
    async def run(self, checkpoint_at: datetime) -> None:
        # The same attributes the benchmark counts cases by ("asleep in track", "still due").
        workflow.upsert_search_attributes(
            [CASE_STAGE.value_set("track"), NEXT_CHECKPOINT_AT.value_set(checkpoint_at)]
        )
        await workflow.sleep(max(checkpoint_at - workflow.now(), timedelta(0)))
        next_at = checkpoint_at + AFTER_FIRING
        workflow.upsert_search_attributes([NEXT_CHECKPOINT_AT.value_set(next_at)])
        await workflow.sleep(next_at - workflow.now())

    @workflow.signal
    def receive(self, payment: LoanPayment) -> None:
        """A payment, as a case receives one: nothing to do."""
