"""The seeds' worked cases, with every number written out."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from decisions.plans import propose
from decisions.policy import load_policy
from decisions.tiering import assess
from schemas.assessment import CreditRecord, Engagement, HardshipKind, Tier
from schemas.plan import ApprovalAuthority, PlanType
from tests import factories

pytestmark = pytest.mark.unit

FIRST_DUE = date(2026, 4, 1)


def test_seed_000_twelve_month_extension_thirty_percent_lower_payment_part_interest_waived():
    # 30,000.00 principal at 6 % a year with 24 months left pays 1,329.62 a month; the borrower
    # owes 300.00 interest, 400.00 penalty interest and 100.00 fees on top: 30,800.00 in all.
    policy = load_policy()
    loan = factories.loan()
    assessment = assess(loan, factories.profile(), CreditRecord(), Engagement(), policy)
    assert assessment.tier is Tier.MODERATE
    assert assessment.reasons == ("DPD_31_TO_90", "LASTING_HARDSHIP")
    # Disposable 9,000 - 5,500 - 1,200 = 2,300.00; half of it is affordable.
    assert assessment.affordability is not None
    assert assessment.affordability.affordable_instalment == Decimal("1150.00")

    proposal = propose(loan, assessment, policy, FIRST_DUE)
    option = proposal.option("penalty_waiver")

    # Half the 500.00 penalty interest and fees waived; 30,550.00 over 24 + 12 = 36 months.
    assert option.terms.plan_type is PlanType.PENALTY_WAIVER
    assert option.terms.extension_months == 12
    assert option.terms.term_months == 36
    assert option.terms.waived == Decimal("250.00")
    schedule = option.schedule
    assert schedule.balance == Decimal("30550.00")
    first, last = schedule.instalments[0], schedule.instalments[-1]
    assert (first.due_date, first.principal, first.interest, first.amount) == (
        date(2026, 4, 1),
        Decimal("776.64"),
        Decimal("152.75"),  # 30,550.00 x 0.5 %
        Decimal("929.39"),
    )
    assert (last.number, last.due_date, last.principal, last.interest, last.amount) == (
        36,
        date(2029, 3, 1),
        Decimal("924.77"),
        Decimal("4.62"),
        Decimal("929.39"),
    )
    assert all(i.amount == Decimal("929.39") for i in schedule.instalments)
    assert schedule.total_principal == Decimal("30550.00")
    assert schedule.total_interest == Decimal("2908.04")
    assert schedule.total_payable == Decimal("33458.04")
    # 929.39 is 30.1 % below the contractual 1,329.62.
    assert first.amount <= loan.contractual_instalment * Decimal("0.70")
    # 250.00 / 30,800.00 = 0.81 % of the debt: within automatic authority (2 %).
    assert option.waiver_share == Decimal("0.008117")
    assert option.required_authority is ApprovalAuthority.AUTOMATIC

    # The plain 12-month extension recovers more for the bank, so it ranks first.
    assert [o.option_id for o in proposal.offered] == [
        "term_extension_12m",
        "penalty_waiver",
        "term_extension_6m",
    ]


def test_seed_004_job_loss_six_month_extension_with_lower_instalments():
    # 12,000.00 at 7.2 % a year, 12 months left, 1,035.00 a month; lost their job, expects to
    # work again within 6 months; now lives on 3,500.00 with 2,200.00 essential expenses.
    policy = load_policy()
    loan = factories.loan(
        principal_outstanding=Decimal("12000.00"),
        interest_outstanding=Decimal("120.00"),
        penalty_interest_outstanding=Decimal("60.00"),
        fees_outstanding=Decimal("20.00"),
        overdue_amount=Decimal("1235.00"),
        days_past_due=20,
        delinquent_since=date(2026, 2, 9),
        contractual_instalment=Decimal("1035.00"),
        remaining_term_months=12,
        annual_interest_rate=Decimal("0.072"),
    )
    borrower = factories.profile(
        monthly_income=Decimal("3500.00"),
        essential_expenses=Decimal("2200.00"),
        other_debt_payments=Decimal("0.00"),
        household_size=2,
        hardship_reason="job_loss",
        temporary=True,
        expected_recovery_months=6,
    )
    assessment = assess(loan, borrower, CreditRecord(), Engagement(), policy)
    assert assessment.tier is Tier.LIGHT
    assert assessment.reasons == ("DPD_UP_TO_30", "GOOD_CREDIT_HISTORY", "TEMPORARY_HARDSHIP")
    affordability = assessment.affordability
    assert affordability is not None
    assert affordability.hardship is HardshipKind.TEMPORARY
    assert affordability.affordable_instalment == Decimal("650.00")  # half of 1,300.00

    proposal = propose(loan, assessment, policy, FIRST_DUE)
    # Only the reduced payment fits: a plain 6-month extension would still ask 717.xx now.
    assert [o.option_id for o in proposal.offered] == ["reduced_payment"]
    excluded = {e.option_id: e.reasons for e in proposal.excluded}
    assert excluded["term_extension_6m"] == ("INSTALMENT_OVER_AFFORDABLE",)
    assert excluded["term_extension_12m"] == ("EXTENSION_OVER_TIER_LIMIT",)

    option = proposal.offered[0]
    assert option.terms.extension_months == 6
    assert option.terms.term_months == 18
    assert option.terms.reduced_months == 6
    schedule = option.schedule
    assert schedule.balance == Decimal("12200.00")
    rows = [(i.number, i.due_date, i.principal, i.interest, i.amount) for i in schedule.instalments]
    # Six months at 30 % below the 18-month level payment (717.07 -> 501.95) ...
    assert rows[:6] == [
        (1, date(2026, 4, 1), Decimal("428.75"), Decimal("73.20"), Decimal("501.95")),
        (2, date(2026, 5, 1), Decimal("431.32"), Decimal("70.63"), Decimal("501.95")),
        (3, date(2026, 6, 1), Decimal("433.91"), Decimal("68.04"), Decimal("501.95")),
        (4, date(2026, 7, 1), Decimal("436.51"), Decimal("65.44"), Decimal("501.95")),
        (5, date(2026, 8, 1), Decimal("439.13"), Decimal("62.82"), Decimal("501.95")),
        (6, date(2026, 9, 1), Decimal("441.77"), Decimal("60.18"), Decimal("501.95")),
    ]
    # ... then the remaining 9,588.61 re-amortised over 12 months, rounding in the last one.
    assert rows[6] == (7, date(2026, 10, 1), Decimal("773.03"), Decimal("57.53"), Decimal("830.56"))
    assert all(row[4] == Decimal("830.56") for row in rows[6:17])
    assert rows[17] == (18, date(2027, 9, 1), Decimal("825.54"), Decimal("4.95"), Decimal("830.49"))
    assert schedule.total_principal == Decimal("12200.00")
    assert schedule.total_interest == Decimal("778.35")
    assert schedule.total_payable == Decimal("12978.35")
    # After recovery the borrower pays less than the 1,035.00 they paid before.
    assert schedule.max_instalment < loan.contractual_instalment
    assert option.required_authority is ApprovalAuthority.AUTOMATIC
