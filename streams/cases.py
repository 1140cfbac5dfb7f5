"""Every call the stream processor makes to Temporal: start a case, signal a case, record a
contact interaction in the borrower's ledger. Nothing else.

Both go through the case's typed handle (``workflows.handle``: signal-with-start of the episode's
case, and the one ``event`` signal every inbound event is delivered by), and both are counted
here (``accord_streams_temporal_calls``), so what ingestion costs Temporal is measured in one
place.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import cast

from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from decisions.contact_ledger import Interaction
from engine.balance import amount_band, first_unpaid_day
from schemas.case import CaseStage
from schemas.events import ContactInteraction, Event, InboundEvent, LoanOverdue
from settings import Settings
from streams.metrics import StreamMetrics
from workflows import search_attributes as sa
from workflows.handle import CaseHandle, open_case
from workflows.ledger_handle import ContactLedgerHandle

CASE_WORKFLOW = "CaseWorkflow"


class Started(StrEnum):
    STARTED = "started"  # a new case, or the running one signalled
    CLOSED = "closed"  # the case id exists and is closed: not reopened


class Signalled(StrEnum):
    DELIVERED = "delivered"
    GONE = "gone"  # no running case with that id (closed, terminated or never started)


def initial_search_attributes(event: LoanOverdue, today: date) -> TypedSearchAttributes:
    """Set at start so the case is filterable before its first workflow task runs, with the
    values the case itself projects before any payment (``engine.view.projection``: days past
    due counted to today, the outstanding amount as its band); the workflow keeps them current."""
    first_unpaid = first_unpaid_day(event)
    days_past_due = max((today - first_unpaid).days, 0) if event.overdue_amount > 0 else 0
    return TypedSearchAttributes(
        [
            SearchAttributePair(sa.CASE_STAGE, CaseStage.COLLECT_INFO.value),
            SearchAttributePair(sa.DAYS_PAST_DUE, days_past_due),
            SearchAttributePair(sa.OUTSTANDING_AMOUNT, amount_band(event.total_outstanding)),
            SearchAttributePair(sa.PRODUCT_TYPE, event.product.value),
        ]
    )


class Cases:
    """Starts and signals cases; counts every call it makes (``accord_streams_temporal_calls``).

    Errors other than "closed" and "gone" are raised as Temporal reported them (``RPCError``);
    the caller decides what is transient."""

    def __init__(
        self,
        settings: Settings,
        temporal: Callable[[], Awaitable[Client]],
        metrics: StreamMetrics,
    ) -> None:
        self._task_queue = settings.temporal.task_queue
        self._temporal = temporal
        self._metrics = metrics

    async def start_case(self, event: LoanOverdue) -> Started:
        """Signal-with-start of the event's episode case; a closed case is not reopened."""
        client = await self._temporal()
        self._metrics.temporal_call("start")
        try:
            await open_case(
                client,
                event,
                task_queue=self._task_queue,
                search_attributes=initial_search_attributes(event, datetime.now(UTC).date()),
            )
        except WorkflowAlreadyStartedError:
            # Only a closed case refuses signal-with-start.
            return Started.CLOSED
        return Started.STARTED

    async def signal_case(self, case_id: str, event: Event) -> Signalled:
        client = await self._temporal()
        self._metrics.temporal_call("signal")
        try:
            await CaseHandle(client, case_id).send(cast(InboundEvent, event))
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                return Signalled.GONE
            raise
        return Signalled.DELIVERED

    async def record_interaction(self, event: ContactInteraction) -> None:
        """Into the borrower's contact ledger (signal-with-start; the ledger keeps each
        ``event_id`` once)."""
        client = await self._temporal()
        self._metrics.temporal_call("ledger")
        ledger = ContactLedgerHandle(client, event.borrower_id, task_queue=self._task_queue)
        await ledger.record_interaction(Interaction.of_event(event))
