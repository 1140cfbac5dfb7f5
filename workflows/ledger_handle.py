"""Typed calls into a borrower's contact ledger for everyone outside it: the contact activity,
the stream processor, the CLI, benchmarks and tests. Each call starts the ledger if it is not
running (update- or signal-with-start), so no caller has to know whether it exists."""

from __future__ import annotations

from typing import Any

from temporalio.client import Client, WithStartWorkflowOperation, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from decisions.contact_ledger import AttemptRequest, Interaction, LedgerView, OutcomeReport
from schemas.contact import ContactDecision
from workflows.contact_ledger import (
    INTERACTION_SIGNAL,
    OUTCOME_SIGNAL,
    ContactLedgerWorkflow,
    LedgerStart,
    ledger_id,
)


class ContactLedgerHandle:
    def __init__(self, client: Client, borrower_id: str, *, task_queue: str) -> None:
        self.borrower_id = borrower_id
        self.workflow_id = ledger_id(borrower_id)
        self._client = client
        self._task_queue = task_queue

    async def request(self, request: AttemptRequest) -> ContactDecision:
        """Grant (and record) one attempt, or refuse it with the reason; raises
        ``WorkflowUpdateFailedError`` for a request the ledger refuses to judge."""
        start = WithStartWorkflowOperation(
            ContactLedgerWorkflow.run,
            self._start(),
            id=self.workflow_id,
            task_queue=self._task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        )
        return await self._client.execute_update_with_start_workflow(
            ContactLedgerWorkflow.request_attempt, request, start_workflow_operation=start
        )

    async def record_outcome(self, report: OutcomeReport) -> None:
        await self._signal_with_start(OUTCOME_SIGNAL, report)

    async def record_interaction(self, interaction: Interaction) -> None:
        """Recorded once per ``interaction_id``."""
        await self._signal_with_start(INTERACTION_SIGNAL, interaction)

    async def view(self, **rpc: Any) -> LedgerView:
        handle: WorkflowHandle[ContactLedgerWorkflow, LedgerView] = (
            self._client.get_workflow_handle_for(ContactLedgerWorkflow.run, self.workflow_id)
        )
        return await handle.query(ContactLedgerWorkflow.view, **rpc)

    def _start(self) -> LedgerStart:
        return LedgerStart(borrower_id=self.borrower_id)

    async def _signal_with_start(self, signal: str, arg: Any) -> None:
        await self._client.start_workflow(
            ContactLedgerWorkflow.run,
            self._start(),
            id=self.workflow_id,
            task_queue=self._task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            start_signal=signal,
            start_signal_args=[arg],
        )
