"""The contact ledger workflow: one per borrower, a thin shell over ``decisions.contact_ledger``.

Workflow id ``contact-ledger-<borrower_id>`` (an opaque id, no personal data). Every case of the
borrower asks it before each contact attempt (``request_attempt``, an update: the answer is the
grant or the refusal, and a grant is recorded in the same handler, so two cases can never both
take the last attempt a cap allows), then reports the outcome (``record_outcome``, a signal).
Contacts that happened elsewhere — an inbound call, a conversation an agent held — arrive as
``record_interaction`` signals, from the cases and from the contact-centre topic.

It runs as long as something in it can still block a contact: after ``decisions.contact_ledger
.RETENTION`` without a change it finishes, and the next request starts a fresh run (callers use
update- or signal-with-start). A long-lived ledger continues-as-new with its whole state.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from decisions import contact_ledger as ledger
    from decisions.contact_ledger import (
        AttemptRequest,
        Interaction,
        LedgerState,
        LedgerView,
        OutcomeReport,
    )
    from decisions.local_days import zone
    from schemas.contact import ContactDecision

LEDGER_ID_PREFIX = "contact-ledger-"
REQUEST_UPDATE = "request_attempt"
OUTCOME_SIGNAL = "record_outcome"
INTERACTION_SIGNAL = "record_interaction"
IDLE_FOR = ledger.RETENTION
"""Nothing recorded for this long: nothing in the ledger can block a contact any more."""


def ledger_id(borrower_id: str) -> str:
    return f"{LEDGER_ID_PREFIX}{borrower_id}"


class LedgerStart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    borrower_id: str
    continue_as_new_after_events: int = 10_000
    carried: LedgerState | None = None


@workflow.defn(name="ContactLedgerWorkflow")
class ContactLedgerWorkflow:
    @workflow.init
    def __init__(self, start: LedgerStart) -> None:
        if start.carried is not None:
            self._state = start.carried
            self._state.run_count += 1
        else:
            self._state = LedgerState(borrower_id=start.borrower_id)
        self._event_limit = start.continue_as_new_after_events
        self._last_change = workflow.now()

    @workflow.run
    async def run(self, start: LedgerStart) -> LedgerView:
        while True:
            idle_at = self._last_change + IDLE_FOR
            remaining = idle_at - workflow.now()
            if remaining <= timedelta(0):
                # Finish only between requests; one arriving meanwhile starts a new run.
                await workflow.wait_condition(workflow.all_handlers_finished)
                if workflow.now() >= self._last_change + IDLE_FOR:
                    return ledger.view(self._state)
                continue
            try:
                await workflow.wait_condition(self._history_is_long, timeout=remaining)
            except TimeoutError:
                continue
            await workflow.wait_condition(workflow.all_handlers_finished)
            workflow.continue_as_new(
                LedgerStart(
                    borrower_id=self._state.borrower_id,
                    continue_as_new_after_events=self._event_limit,
                    carried=self._state,
                )
            )

    def _history_is_long(self) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() > self._event_limit
        )

    @workflow.update(name=REQUEST_UPDATE)
    def request_attempt(self, request: AttemptRequest) -> ContactDecision:
        """Grant (and record) the attempt or refuse it; no await, so no other handler runs
        between the check and the record."""
        self._last_change = workflow.now()
        return ledger.request_attempt(self._state, request)

    @request_attempt.validator
    def _valid_request(self, request: AttemptRequest) -> None:
        zone(request.time_zone)  # ValueError: refused, the ledger unchanged

    @workflow.signal(name=OUTCOME_SIGNAL)
    def record_outcome(self, report: OutcomeReport) -> None:
        self._last_change = workflow.now()
        ledger.record_outcome(self._state, report)

    @workflow.signal(name=INTERACTION_SIGNAL)
    def record_interaction(self, interaction: Interaction) -> None:
        self._last_change = workflow.now()
        ledger.record_interaction(self._state, interaction)

    @workflow.query(name="view")
    def view(self) -> LedgerView:
        return ledger.view(self._state)


__all__ = [
    "INTERACTION_SIGNAL",
    "OUTCOME_SIGNAL",
    "REQUEST_UPDATE",
    "ContactLedgerWorkflow",
    "LedgerStart",
    "ledger_id",
]
