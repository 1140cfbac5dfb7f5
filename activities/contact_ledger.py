"""The borrower's contact ledger as the contact activity sees it: ask before every attempt,
report its outcome, record contacts staff had.

The ledger is a Temporal workflow (``workflows/contact_ledger.py``), one per borrower. A case
workflow cannot ask another workflow a question (it can only signal), so the contact activity
asks, through the client of the worker it runs in, on the task queue it runs on (the ledgers
run where the cases do). Errors keep the activity contract: Temporal unreachable is
``SystemUnavailable`` (retried), a request the ledger refuses to judge ``PermanentRejection``.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from temporalio import activity
from temporalio.client import (
    Client,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.service import RPCError

from activities.faults import PermanentRejection, SystemUnavailable
from decisions.contact_ledger import AttemptRequest, Interaction, OutcomeReport
from schemas.contact import ContactDecision
from workflows.ledger_handle import ContactLedgerHandle

T = TypeVar("T")


class ContactLedger(Protocol):
    async def request(self, borrower_id: str, request: AttemptRequest) -> ContactDecision:
        """Grant and record the attempt, or refuse it (same id asked again: granted again)."""
        ...

    async def record_outcome(self, borrower_id: str, report: OutcomeReport) -> None: ...

    async def record_interaction(self, borrower_id: str, interaction: Interaction) -> None: ...


@dataclass
class TemporalContactLedger:
    """The ledger workflows. ``client`` and ``task_queue`` default to the running activity's."""

    client: Client | None = None
    task_queue: str | None = None

    async def request(self, borrower_id: str, request: AttemptRequest) -> ContactDecision:
        return await _translated(self._handle(borrower_id).request(request))

    async def record_outcome(self, borrower_id: str, report: OutcomeReport) -> None:
        await _translated(self._handle(borrower_id).record_outcome(report))

    async def record_interaction(self, borrower_id: str, interaction: Interaction) -> None:
        await _translated(self._handle(borrower_id).record_interaction(interaction))

    def _handle(self, borrower_id: str) -> ContactLedgerHandle:
        client = self.client or activity.client()
        task_queue = self.task_queue or activity.info().task_queue
        return ContactLedgerHandle(client, borrower_id, task_queue=task_queue)


async def _translated(call: Awaitable[T]) -> T:
    try:
        return await call
    except WorkflowUpdateFailedError as error:
        raise PermanentRejection(f"contact ledger refused the request: {error.cause}") from None
    except (RPCError, WorkflowUpdateRPCTimeoutOrCancelledError) as error:
        raise SystemUnavailable(f"contact ledger unreachable: {error}") from None
