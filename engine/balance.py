"""The balance and arrears now, from what the case knows: the loan position core banking last
reported, the signed plan and the ledger as last read, and the payments reported since.

Before a plan is signed the loan position is the basis: each payment reported after it reduces
what is owed and overdue, and each contractual instalment it covers moves the oldest unpaid due
date a month on. Under a plan the basis is the plan: what its schedule makes due up to
yesterday, less what the ledger and the payments since say was paid. The ledger still decides
every instalment at its checkpoint (``engine.machine``); this is what staff and the search
attributes see in between.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_FLOOR, Decimal

from decisions.schedules import add_months
from engine.state import CaseState
from schemas.events import LoanOverdue
from schemas.money import Currency


@dataclass(frozen=True)
class Balance:
    currency: Currency
    outstanding: Decimal
    """Owed now: the loan's total outstanding, or under a plan what its schedule still asks."""
    arrears: Decimal
    """Due and unpaid now."""
    overdue_since: date | None
    """The oldest due date not paid (None when nothing is overdue)."""
    paid_since_basis: Decimal
    """Payments reported since the loan position or the ledger was read."""
    last_payment_at: datetime | None
    basis: str
    """``loan`` (the loan position) or ``plan`` (the signed plan and its ledger)."""

    def days_past_due(self, today: date) -> int:
        return max((today - self.overdue_since).days, 0) if self.overdue_since else 0


def first_unpaid_day(loan: LoanOverdue) -> date:
    """The day the loan's oldest unpaid instalment fell due, as its overdue event reports."""
    return loan.occurred_at.date() - timedelta(days=loan.days_past_due)


def balance_now(state: CaseState, now: datetime) -> Balance | None:
    """None until core banking reported the loan."""
    if state.agreement is not None and state.tracking is not None:
        return _under_plan(state, now)
    loan = state.loan
    if loan is None:
        return None
    paid = _paid_after(state, loan.occurred_at)
    arrears = max(loan.overdue_amount - paid, Decimal(0))
    overdue_since = None
    if arrears > 0:
        first_unpaid = first_unpaid_day(loan)
        covered = 0
        if loan.contractual_instalment > 0:
            covered = int((paid / loan.contractual_instalment).to_integral_value(ROUND_FLOOR))
        overdue_since = add_months(first_unpaid, covered)
    return Balance(
        currency=loan.currency,
        outstanding=max(loan.total_outstanding - paid, Decimal(0)),
        arrears=arrears,
        overdue_since=overdue_since,
        paid_since_basis=paid,
        last_payment_at=_last_payment(state),
        basis="loan",
    )


def _under_plan(state: CaseState, now: datetime) -> Balance:
    agreement, tracking = state.agreement, state.tracking
    assert agreement is not None and tracking is not None
    schedule = agreement.schedule
    read_at = tracking.ledger_read_at or datetime.combine(agreement.issued_at.date(), time(0), UTC)
    since_read = _paid_after(state, read_at)
    paid = tracking.paid_total + since_read
    today = now.date()
    due_so_far = Decimal(0)
    overdue_since = None
    for index in range(len(schedule)):
        due = datetime.combine(schedule.due_date(index), time(0), UTC) + tracking.schedule_shift
        if due.date() >= today:
            break
        due_so_far += schedule.amount(index)
        if overdue_since is None and paid < due_so_far:
            overdue_since = due.date()
    return Balance(
        currency=schedule.currency,
        outstanding=max(schedule.total_payable - paid, Decimal(0)),
        arrears=max(due_so_far - paid, Decimal(0)),
        overdue_since=overdue_since,
        paid_since_basis=since_read,
        last_payment_at=_last_payment(state),
        basis="plan",
    )


def _paid_after(state: CaseState, moment: datetime) -> Decimal:
    return sum((p.amount for p in state.payments if p.at > moment), Decimal(0))


def _last_payment(state: CaseState) -> datetime | None:
    return state.payments[-1].at if state.payments else None


def amount_band(amount: Decimal) -> int:
    """The lower bound of the amount's band on a 1-2-5 scale in whole currency units
    (10,130.50 → 10000: the band 10,000 to 19,999.99). Search attributes hold this, never the
    exact amount: the visibility store is not encrypted."""
    whole = int(amount.to_integral_value(ROUND_FLOOR))
    if whole < 1:
        return 0
    magnitude = 10 ** (len(str(whole)) - 1)
    leading = whole // magnitude
    return int((5 if leading >= 5 else 2 if leading >= 2 else 1) * magnitude)
