"""The seeds' worked cases under the default policy, with every number written out."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from decisions.plans import propose
from decisions.policy import load_policy
from decisions.schedules import schedule_of
from decisions.tiering import assess
from schemas.assessment import CreditRecord, Engagement, HardshipKind, Tier
from schemas.plan import ApprovalAuthority, Lever, PhaseKind
from tests import factories

pytestmark = pytest.mark.unit

FIRST_DUE = date(2026, 4, 1)
ANSWERED = Engagement(contact_attempts=2, conversations=1)


def test_seed_000_term_extended_to_twelve_months_thirty_percent_lower_part_interest_waived():
    """Seed 000 §6.1: term extended to 12 months, monthly payment 30 % lower, part of the
    interest waived. A consumer loan at 12 % a year paying 1,000.00 a month: three instalments
    are overdue and five are left, so 7,651.68 principal is owed (eight instalments' worth) with
    229.55 of interest and 20.00 of penalty interest: 7,901.23. The borrower's income fell for
    good; they can pay 700.00 a month (30 % less)."""
    policy = load_policy()
    loan = factories.loan(
        principal_outstanding=Decimal("7651.68"),
        interest_outstanding=Decimal("229.55"),
        penalty_interest_outstanding=Decimal("20.00"),
        fees_outstanding=Decimal("0.00"),
        overdue_amount=Decimal("3020.00"),
        days_past_due=75,
        contractual_instalment=Decimal("1000.00"),
        remaining_term_months=5,
        annual_interest_rate=Decimal("0.12"),
    )
    borrower = factories.profile(
        monthly_income=Decimal("4400.00"),
        essential_expenses=Decimal("3000.00"),
        other_debt_payments=Decimal("0.00"),
        hardship_reason="income_reduction",
        temporary=False,
    )
    assessment = assess(loan, borrower, CreditRecord(), ANSWERED, policy)
    assert assessment.tier is Tier.MODERATE
    assert assessment.reasons == ("DPD_31_TO_90", "LASTING_HARDSHIP")
    assert assessment.affordability is not None
    assert assessment.affordability.affordable_instalment == Decimal("700.00")  # half of 1,400

    proposal = propose(loan, assessment, policy, FIRST_DUE)
    assert [(o.rank, o.option_id) for o in proposal.offered] == [
        (1, "extension_12m_waiver_interest_waiver"),
        (2, "extension_13m"),
    ]
    option = proposal.offered[0]
    terms = option.terms
    assert terms.levers == (
        Lever.ARREARS_CAPITALISATION,
        Lever.TERM_EXTENSION,
        Lever.PENALTY_FEE_WAIVER,
        Lever.INTEREST_WAIVER,
    )
    # Twelve months at 1 % a month carry at most 699.99 x 11.2551 = 7,878.44: 22.79 must go.
    # Half the penalty (the tier's limit on penalty and fees) is 10.00; the other 12.79 comes
    # off the ordinary interest (its limit: 30 % of 229.55 = 68.86).
    assert (terms.term_months, terms.extension_months) == (12, 7)
    assert (terms.waived_penalty, terms.waived_fees, terms.waived_interest) == (
        Decimal("10.00"),
        Decimal("0.00"),
        Decimal("12.79"),
    )
    assert terms.annual_interest_rate == Decimal("0.12")
    assert terms.balance == Decimal("7878.44")
    schedule = schedule_of(terms)
    rows = [(i.number, i.due_date, i.principal, i.interest, i.amount) for i in schedule.instalments]
    assert rows[:2] == [
        (1, date(2026, 4, 1), Decimal("621.21"), Decimal("78.78"), Decimal("699.99")),
        (2, date(2026, 5, 1), Decimal("627.41"), Decimal("72.58"), Decimal("699.99")),
    ]
    assert rows[-1] == (12, date(2027, 3, 1), Decimal("693.06"), Decimal("6.93"), Decimal("699.99"))
    assert {row[4] for row in rows} == {Decimal("699.99")}  # 30.0 % below 1,000.00
    assert (schedule.total_interest, schedule.total_payable) == (
        Decimal("521.44"),
        Decimal("8399.88"),
    )
    # 22.79 of 7,901.23 given up: 0.29 %, within automatic authority (2 %).
    assert (option.concession, option.concession_share) == (Decimal("22.79"), Decimal("0.002885"))
    assert option.required_authority is ApprovalAuthority.AUTOMATIC
    # It ranks first: one month shorter, worth more than the 22.79 it gives up.
    assert (option.completion_probability, option.expected_recovery) == (
        Decimal("0.706247"),
        Decimal("6248.08"),
    )
    runner_up = proposal.offered[1]
    assert (runner_up.max_instalment, runner_up.expected_recovery) == (
        Decimal("651.18"),
        Decimal("6243.39"),
    )


def test_seed_004_unemployed_six_months_of_lower_payments_then_a_longer_term():
    """Seed 004 §4.1: lost their job, expects to work again in 6 months; the plan lowers the
    instalment meanwhile and extends the term. 12,000.00 at 7.2 % a year, 12 months left at
    1,035.00; the borrower lives on 3,500.00 with 2,200.00 of essential expenses."""
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
    assessment = assess(loan, borrower, CreditRecord(), ANSWERED, policy)
    assert assessment.tier is Tier.LIGHT
    assert assessment.reasons == ("DPD_UP_TO_30", "GOOD_CREDIT_HISTORY", "TEMPORARY_HARDSHIP")
    affordability = assessment.affordability
    assert affordability is not None
    assert affordability.hardship is HardshipKind.TEMPORARY
    assert affordability.affordable_instalment == Decimal("650.00")  # half of 1,300.00
    assert affordability.limit_for(7) == Decimal("1035.00")  # back to work: the old instalment

    proposal = propose(loan, assessment, policy, FIRST_DUE)
    assert [o.option_id for o in proposal.offered] == [
        "reduced_6m_term_15m",
        "extension_20m",
        "interest_only_6m_term_19m",
        "holiday_6m_term_19m",
    ]
    option = proposal.offered[0]
    terms = option.terms
    assert terms.levers == (
        Lever.REDUCED_PAYMENT,
        Lever.ARREARS_CAPITALISATION,
        Lever.TERM_EXTENSION,
    )
    assert [(p.kind, p.months, p.payment) for p in terms.phases] == [
        (PhaseKind.FIXED, 6, Decimal("650.00")),
        (PhaseKind.LEVEL, 9, None),
    ]
    assert (terms.term_months, terms.extension_months, terms.waived) == (15, 3, 0)
    schedule = schedule_of(terms)
    rows = [(i.number, i.due_date, i.principal, i.interest, i.amount) for i in schedule.instalments]
    # Six months of 650.00 (37 % below 1,035.00) while unemployed ...
    assert rows[:6] == [
        (1, date(2026, 4, 1), Decimal("576.80"), Decimal("73.20"), Decimal("650.00")),
        (2, date(2026, 5, 1), Decimal("580.26"), Decimal("69.74"), Decimal("650.00")),
        (3, date(2026, 6, 1), Decimal("583.74"), Decimal("66.26"), Decimal("650.00")),
        (4, date(2026, 7, 1), Decimal("587.25"), Decimal("62.75"), Decimal("650.00")),
        (5, date(2026, 8, 1), Decimal("590.77"), Decimal("59.23"), Decimal("650.00")),
        (6, date(2026, 9, 1), Decimal("594.31"), Decimal("55.69"), Decimal("650.00")),
    ]
    # ... then the remaining 8,716.87 over nine months at 994.39/994.40 (level 994.3944...).
    assert rows[6] == (7, date(2026, 10, 1), Decimal("942.27"), Decimal("52.13"), Decimal("994.40"))
    assert [row[4] for row in rows[6:]] == [Decimal("994.40"), Decimal("994.39")] * 4 + [
        Decimal("994.40")
    ]
    assert rows[-1] == (
        15,
        date(2027, 6, 1),
        Decimal("988.46"),
        Decimal("5.94"),
        Decimal("994.40"),
    )
    assert (schedule.total_principal, schedule.total_interest, schedule.total_payable) == (
        Decimal("12200.00"),
        Decimal("649.56"),
        Decimal("12849.56"),
    )
    assert option.required_authority is ApprovalAuthority.AUTOMATIC
    assert (option.completion_probability, option.expected_recovery) == (
        Decimal("0.818806"),
        Decimal("10296.56"),
    )
