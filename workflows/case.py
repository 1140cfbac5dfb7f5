"""The case workflow: one per loan per delinquency episode (DESIGN §3).

Thin first cut: records the inbound events (de-duplicated by ``event_id``) and keeps the case's
search attributes current. The lifecycle stages build on this.
"""

from __future__ import annotations

from datetime import date
from decimal import ROUND_CEILING

from pydantic import BaseModel
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from schemas.events import CustomerHardship, LoanOverdue, LoanPayment, LoanStatus
    from workflows import search_attributes as sa


class CaseStart(BaseModel):
    loan_id: str
    delinquent_since: date


@workflow.defn(name="CaseWorkflow")
class CaseWorkflow:
    def __init__(self) -> None:
        self._seen_event_ids: set[str] = set()
        self._latest_overdue: LoanOverdue | None = None
        self._payments: list[LoanPayment] = []
        self._status: LoanStatus | None = None
        self._hardship: CustomerHardship | None = None
        self._stage = "collect_info"

    @workflow.run
    async def run(self, start: CaseStart) -> str:
        await workflow.wait_condition(lambda: self._status is not None)
        return self._status.status.value if self._status else "unknown"

    def _first_time(self, event_id: str) -> bool:
        if event_id in self._seen_event_ids:
            return False
        self._seen_event_ids.add(event_id)
        return True

    @workflow.signal(name="overdue")
    def on_overdue(self, event: LoanOverdue) -> None:
        if not self._first_time(event.event_id):
            return
        if self._latest_overdue is None or event.occurred_at >= self._latest_overdue.occurred_at:
            self._latest_overdue = event
            workflow.upsert_search_attributes(
                [
                    sa.CASE_STAGE.value_set(self._stage),
                    sa.DAYS_PAST_DUE.value_set(event.days_past_due),
                    sa.OUTSTANDING_AMOUNT.value_set(
                        int(event.total_outstanding.to_integral_value(rounding=ROUND_CEILING))
                    ),
                    sa.PRODUCT_TYPE.value_set(event.product.value),
                ]
            )

    @workflow.signal(name="payment")
    def on_payment(self, event: LoanPayment) -> None:
        if self._first_time(event.event_id):
            self._payments.append(event)

    @workflow.signal(name="loan_status")
    def on_loan_status(self, event: LoanStatus) -> None:
        if self._first_time(event.event_id):
            self._status = event

    @workflow.signal(name="hardship")
    def on_hardship(self, event: CustomerHardship) -> None:
        if self._first_time(event.event_id):
            self._hardship = event

    @workflow.query(name="applied_event_ids")
    def applied_event_ids(self) -> list[str]:
        return sorted(self._seen_event_ids)
