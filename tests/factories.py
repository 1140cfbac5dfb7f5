"""Builders of valid test inputs; each test overrides only what it is about."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from schemas.assessment import FinancialProfile
from schemas.events import LoanOverdue
from schemas.plan import Agreement


def loan(**overrides: Any) -> LoanOverdue:
    fields: dict[str, Any] = {
        "event_id": "evt-1",
        "occurred_at": datetime(2026, 3, 1, 9, 0, tzinfo=UTC),
        "schema_version": 1,
        "loan_id": "L-1001",
        "borrower_id": "B-77",
        "product": "personal_loan",
        "currency": "CNY",
        "principal_outstanding": Decimal("30000.00"),
        "interest_outstanding": Decimal("300.00"),
        "penalty_interest_outstanding": Decimal("400.00"),
        "fees_outstanding": Decimal("100.00"),
        "overdue_amount": Decimal("2959.24"),
        "days_past_due": 45,
        "delinquent_since": date(2026, 1, 15),
        "contractual_instalment": Decimal("1329.62"),
        "remaining_term_months": 24,
        "annual_interest_rate": Decimal("0.06"),
    }
    fields.update(overrides)
    return LoanOverdue(**fields)


def profile(**overrides: Any) -> FinancialProfile:
    fields: dict[str, Any] = {
        "currency": "CNY",
        "monthly_income": Decimal("9000.00"),
        "essential_expenses": Decimal("5500.00"),
        "other_debt_payments": Decimal("1200.00"),
        "household_size": 3,
        "hardship_reason": "income_reduction",
        "temporary": False,
    }
    fields.update(overrides)
    return FinancialProfile(**fields)


def agreement(overdue: LoanOverdue | None = None, **profile_overrides: Any) -> Agreement:
    """The agreement the default policy issues for ``overdue``'s best offered plan."""
    from decisions.plans import issue_agreement, propose
    from decisions.policy import load_policy
    from decisions.tiering import assess
    from schemas.assessment import CreditRecord, Engagement
    from schemas.plan import AgreementRefused

    overdue = overdue or loan()
    policy = load_policy()
    assessment = assess(overdue, profile(**profile_overrides), CreditRecord(), Engagement(), policy)
    issued_at = datetime.now(UTC)
    proposal = propose(overdue, assessment, policy, issued_at.date())
    best = min(proposal.offered, key=lambda option: option.rank)
    issued = issue_agreement(
        agreement_id=f"{overdue.case_id}-a1",
        case_id=overdue.case_id,
        option=best,
        loan=overdue,
        policy=policy,
        issued_at=issued_at,
    )
    assert not isinstance(issued, AgreementRefused), issued
    return issued
