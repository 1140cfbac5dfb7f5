"""Core banking: the loan, its ledger, the borrower's credit record, and restructuring.

The ledger is the source of truth for what was paid; Kafka payment events are only hints.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Protocol

from pydantic import AwareDatetime, BaseModel, ConfigDict

from activities.faults import Faults, PermanentRejection
from schemas.assessment import CreditRecord
from schemas.events import LoanOverdue
from schemas.money import Amount, Currency
from schemas.plan import Agreement


class LedgerPosition(BaseModel):
    """What the borrower has paid into the loan since a date (inclusive)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    loan_id: str
    currency: Currency
    since: date
    paid_total: Amount
    last_paid_at: AwareDatetime | None = None


class RestructureReceipt(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    agreement_id: str
    restructure_ref: str
    applied_at: AwareDatetime


class CoreBanking(Protocol):
    async def read_loan(self, loan_id: str, reported: LoanOverdue | None) -> LoanOverdue:
        """The loan's current overdue position, in the contract of ``loan.overdue.v1``.
        ``reported`` is the latest overdue event the case saw (a real adapter ignores it)."""
        ...

    async def read_credit_record(self, borrower_id: str) -> CreditRecord: ...

    async def read_ledger(self, loan_id: str, since: date) -> LedgerPosition: ...

    async def apply_restructure(
        self, agreement: Agreement, applied_at: AwareDatetime
    ) -> RestructureReceipt:
        """Idempotent by ``agreement.agreement_id``: a repeat returns the first receipt."""
        ...


@dataclass
class _Payment:
    amount: Decimal
    paid_at: AwareDatetime


@dataclass
class CoreBankingSimulator:
    """In-memory core banking with the real one's failure modes (see ``Faults``), for tests
    that want one; the stack runs ``services.core_banking`` behind ``CoreBankingHttp``."""

    loans: dict[str, LoanOverdue] = field(default_factory=dict)
    credit_records: dict[str, CreditRecord] = field(default_factory=dict)
    payments: dict[str, list[_Payment]] = field(default_factory=dict)
    restructures: dict[str, RestructureReceipt] = field(default_factory=dict)
    applied_count: dict[str, int] = field(default_factory=dict)
    """How many times each agreement changed the books: must never exceed 1."""
    faults: Faults = field(default_factory=Faults)
    mirror_reported_loans: bool = False
    """The embedded stack has no loan book: answer an unknown loan with what Kafka reported."""

    # Test and demo helpers (what the bank's own systems would do).
    def add_loan(self, loan: LoanOverdue, credit: CreditRecord | None = None) -> None:
        self.loans[loan.loan_id] = loan
        self.credit_records[loan.borrower_id] = credit or CreditRecord()

    def record_payment(self, loan_id: str, amount: Decimal, paid_at: AwareDatetime) -> None:
        self.payments.setdefault(loan_id, []).append(_Payment(amount, paid_at))

    # The interface.
    async def read_loan(self, loan_id: str, reported: LoanOverdue | None) -> LoanOverdue:
        self.faults.before("read_loan")
        if loan_id not in self.loans and self.mirror_reported_loans and reported is not None:
            self.add_loan(reported)
        if loan_id not in self.loans:
            raise PermanentRejection(f"read_loan: unknown loan {loan_id}")
        return self.loans[loan_id]

    async def read_credit_record(self, borrower_id: str) -> CreditRecord:
        self.faults.before("read_credit_record")
        return self.credit_records.get(borrower_id, CreditRecord())

    async def read_ledger(self, loan_id: str, since: date) -> LedgerPosition:
        self.faults.before("read_ledger")
        loan = self.loans.get(loan_id)
        if loan is None:
            raise PermanentRejection(f"read_ledger: unknown loan {loan_id}")
        relevant = [p for p in self.payments.get(loan_id, []) if p.paid_at.date() >= since]
        return LedgerPosition(
            loan_id=loan_id,
            currency=loan.currency,
            since=since,
            paid_total=sum((p.amount for p in relevant), Decimal(0)),
            last_paid_at=max((p.paid_at for p in relevant), default=None),
        )

    async def apply_restructure(
        self, agreement: Agreement, applied_at: AwareDatetime
    ) -> RestructureReceipt:
        self.faults.before("apply_restructure")
        receipt = self.restructures.get(agreement.agreement_id)
        if receipt is None:
            receipt = RestructureReceipt(
                agreement_id=agreement.agreement_id,
                # Unique across simulator instances (each worker process has its own).
                restructure_ref=f"rs-{uuid.uuid4().hex[:12]}",
                applied_at=applied_at,
            )
            self.restructures[agreement.agreement_id] = receipt
            self.applied_count[agreement.agreement_id] = (
                self.applied_count.get(agreement.agreement_id, 0) + 1
            )
        self.faults.after("apply_restructure")
        return receipt
