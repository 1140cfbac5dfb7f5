"""The contact ledger's own logic (``decisions.contact_ledger``) without its workflow, behind
the activity's ``ContactLedger`` interface: for unit tests of the contact activity. The
workflow tests run the real ledger workflow."""

from __future__ import annotations

from dataclasses import dataclass, field

from decisions import contact_ledger as ledger
from decisions.contact_ledger import AttemptRequest, Interaction, LedgerState, OutcomeReport
from schemas.contact import ContactDecision


@dataclass
class InProcessContactLedger:
    books: dict[str, LedgerState] = field(default_factory=dict)

    def of(self, borrower_id: str) -> LedgerState:
        return self.books.setdefault(borrower_id, LedgerState(borrower_id=borrower_id))

    async def request(self, borrower_id: str, request: AttemptRequest) -> ContactDecision:
        return ledger.request_attempt(self.of(borrower_id), request)

    async def record_outcome(self, borrower_id: str, report: OutcomeReport) -> None:
        ledger.record_outcome(self.of(borrower_id), report)

    async def record_interaction(self, borrower_id: str, interaction: Interaction) -> None:
        ledger.record_interaction(self.of(borrower_id), interaction)
