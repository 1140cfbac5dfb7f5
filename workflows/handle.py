"""Typed calls into a case for everyone outside the workflow: the stream processor, the CLI,
the simulator, benchmarks and tests. No update, signal or query name is spelled anywhere else."""

from __future__ import annotations

from typing import Any, cast

from temporalio.client import Client, WorkflowHandle
from temporalio.common import TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.workflow import UpdateMethodMultiParam

from engine.actions import Accepted, CaseAction, CaseAudit
from engine.state import CaseStart
from schemas.case import CaseView
from schemas.events import InboundEvent, LoanOverdue
from workflows.case import EVENT_SIGNAL, CaseWorkflow


class CaseHandle:
    def __init__(self, client: Client, case_id: str) -> None:
        self.case_id = case_id
        self._handle: WorkflowHandle[CaseWorkflow, CaseView] = client.get_workflow_handle_for(
            CaseWorkflow.run, case_id
        )

    async def act(self, action: CaseAction) -> Accepted:
        """Apply a person's action; raises ``WorkflowUpdateFailedError`` with the reason when
        the case refuses it."""
        # temporalio's overloads type an async update's result as its coroutine: cast it back.
        update = cast(
            UpdateMethodMultiParam[[CaseWorkflow, CaseAction], Accepted], CaseWorkflow.act
        )
        return await self._handle.execute_update(update, action)

    async def send(self, event: InboundEvent) -> None:
        """Deliver an inbound event (the case applies each ``event_id`` once)."""
        await self._handle.signal(CaseWorkflow.receive, event)

    async def view(self, **rpc: Any) -> CaseView:
        return await self._handle.query(CaseWorkflow.view, **rpc)

    async def audit(self, **rpc: Any) -> CaseAudit:
        return await self._handle.query(CaseWorkflow.audit, **rpc)

    async def applied_event_ids(self, **rpc: Any) -> list[str]:
        return await self._handle.query(CaseWorkflow.applied_event_ids, **rpc)

    async def result(self) -> CaseView:
        return await self._handle.result()


async def open_case(
    client: Client,
    event: LoanOverdue,
    *,
    task_queue: str,
    search_attributes: TypedSearchAttributes | None = None,
    continue_as_new_after_events: int | None = None,
) -> WorkflowHandle[CaseWorkflow, CaseView]:
    """Signal-with-start: the episode's case gets the event, opened by it if need be. A closed
    case refuses the start (``WorkflowAlreadyStartedError``): an old event never reopens it."""
    start = CaseStart(loan_id=event.loan_id, delinquent_since=event.delinquent_since)
    if continue_as_new_after_events is not None:
        start = start.model_copy(
            update={"continue_as_new_after_events": continue_as_new_after_events}
        )
    return await client.start_workflow(
        CaseWorkflow.run,
        start,
        id=event.case_id,
        task_queue=task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        start_signal=EVENT_SIGNAL,
        start_signal_args=[event],
        search_attributes=search_attributes,
    )
