"""Plan options and schedules: exact sums, exclusions with reasons, limits, ranking, approval."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from decisions.plans import issue_agreement, propose
from decisions.policy import load_policy
from decisions.schedules import add_months, build_schedule
from decisions.tiering import assess
from schemas.assessment import CreditRecord, Engagement, Tier
from schemas.plan import ApprovalAuthority, PlanProposal, PlanTerms, PlanType
from tests import factories

pytestmark = pytest.mark.unit

POLICY = load_policy()
FIRST_DUE = date(2026, 4, 1)


def cents(low: str, high: str) -> st.SearchStrategy[Decimal]:
    return st.decimals(Decimal(low), Decimal(high), places=2, allow_nan=False)


def test_add_months_clamps_to_month_end():
    assert add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)
    assert add_months(date(2026, 1, 31), 2) == date(2026, 3, 31)
    assert add_months(date(2027, 12, 31), 2) == date(2028, 2, 29)


def test_zero_rate_extension_splits_evenly_with_rounding_in_the_last():
    loan = factories.loan(
        principal_outstanding=Decimal("1000.00"),
        interest_outstanding=Decimal("0"),
        penalty_interest_outstanding=Decimal("0"),
        fees_outstanding=Decimal("0"),
        overdue_amount=Decimal("100.00"),
        annual_interest_rate=Decimal("0"),
    )
    terms = PlanTerms(plan_type=PlanType.TERM_EXTENSION, term_months=3, annual_interest_rate=0)
    amounts = [i.amount for i in build_schedule(loan, terms, FIRST_DUE).instalments]
    assert amounts == [Decimal("333.33"), Decimal("333.33"), Decimal("333.34")]


def test_arrears_spread_adds_overdue_interest_free_over_n_instalments():
    loan = factories.loan(days_past_due=10)
    terms = PlanTerms(
        plan_type=PlanType.ARREARS_SPREAD,
        term_months=24,
        annual_interest_rate=Decimal("0.06"),
        arrears_spread_months=3,
    )
    schedule = build_schedule(loan, terms, FIRST_DUE)
    # 2,959.24 overdue in three parts of 986.41 (the last 986.42) on top of the amortisation.
    first, third, fourth = schedule.instalments[0], schedule.instalments[2], schedule.instalments[3]
    assert first.amount - fourth.amount > Decimal("986")
    assert schedule.total_principal == Decimal("30800.00")
    assert third.amount - fourth.amount < first.amount - fourth.amount + Decimal("1")


def test_settlement_asks_what_the_borrower_has_within_policy_and_needs_the_committee():
    borrower = factories.profile(
        monthly_income=Decimal("5000.00"), lump_sum_available=Decimal("20000.00")
    )
    loan = factories.loan(days_past_due=150)
    assessment = assess(loan, borrower, CreditRecord(), Engagement(), POLICY)
    assert assessment.tier is Tier.SEVERE
    proposal = propose(loan, assessment, POLICY, FIRST_DUE)
    settlement = proposal.option("lump_sum_settlement")
    assert [(i.amount, i.due_date) for i in settlement.schedule.instalments] == [
        (Decimal("20000.00"), FIRST_DUE)
    ]
    assert settlement.terms.waived == Decimal("10800.00")
    assert settlement.required_authority is ApprovalAuthority.CREDIT_COMMITTEE
    assert settlement.rank == 1


def test_settlement_below_the_policy_minimum_is_excluded_with_the_reason():
    borrower = factories.profile(
        monthly_income=Decimal("5000.00"), lump_sum_available=Decimal("18000.00")
    )
    loan = factories.loan(days_past_due=150)
    proposal = propose(
        loan, assess(loan, borrower, CreditRecord(), Engagement(), POLICY), POLICY, FIRST_DUE
    )
    excluded = {e.option_id: e.reasons for e in proposal.excluded}
    # 60 % of 30,800.00 is 18,480.00.
    assert excluded["lump_sum_settlement"] == ("LUMP_SUM_BELOW_MINIMUM_SETTLEMENT",)


def test_non_responsive_gets_no_options_and_every_exclusion_has_a_reason():
    loan = factories.loan()
    proposal = propose(
        loan, assess(loan, None, CreditRecord(), Engagement(), POLICY), POLICY, FIRST_DUE
    )
    assert proposal.offered == ()
    assert len(proposal.excluded) == 10  # 3 spreads, 3 extensions, 4 others
    assert all(e.reasons[0] == "PLAN_TYPE_NOT_ALLOWED_FOR_TIER" for e in proposal.excluded)


def test_ranking_follows_the_stated_formula():
    loan = factories.loan()
    assessment = assess(loan, factories.profile(), CreditRecord(), Engagement(), POLICY)
    option = propose(loan, assessment, POLICY, FIRST_DUE).option("term_extension_12m")
    assert assessment.affordability is not None
    discount = 1 + POLICY.ranking.discount_rate / 12
    present_value = sum(i.amount / discount**i.number for i in option.schedule.instalments)
    utilisation = option.schedule.max_instalment / assessment.affordability.affordable_instalment
    probability = POLICY.ranking.completion_moderate * (
        1 - POLICY.ranking.utilisation_penalty * utilisation
    )
    assert option.completion_probability == probability.quantize(Decimal("1e-6"))
    assert abs(option.expected_recovery - option.completion_probability * present_value) < 1


def test_proposal_and_agreement_round_trip_through_json():
    loan = factories.loan()
    proposal = propose(
        loan,
        assess(loan, factories.profile(), CreditRecord(), Engagement(), POLICY),
        POLICY,
        FIRST_DUE,
    )
    assert PlanProposal.model_validate_json(proposal.model_dump_json()) == proposal
    issued_at = datetime(2026, 3, 10, 12, tzinfo=UTC)
    agreement = issue_agreement(
        agreement_id="agr-1",
        case_id="case-L-1001-20260115",
        option=proposal.offered[0],
        loan=loan,
        policy=POLICY,
        issued_at=issued_at,
    )
    assert agreement.schedule.instalments[0].due_date == date(2026, 4, 9)  # 30 days later
    assert agreement.expires_at == datetime(2026, 3, 20, 12, tzinfo=UTC)
    assert agreement.schedule.balance == proposal.offered[0].schedule.balance
    assert type(agreement).model_validate_json(agreement.model_dump_json()) == agreement


def test_proposal_refuses_an_assessment_from_another_policy():
    loan = factories.loan()
    assessment = assess(loan, factories.profile(), CreditRecord(), Engagement(), POLICY)
    other = POLICY.model_copy(update={"version": "accord-2027.1"})
    with pytest.raises(ValueError, match="policy_version"):
        propose(loan, assessment, other, FIRST_DUE)


# --- invariants -----------------------------------------------------------------------------


@st.composite
def loans(draw: st.DrawFn):
    principal = draw(cents("0.01", "2000000"))
    interest = draw(cents("0", "20000"))
    penalty = draw(cents("0", "5000"))
    fees = draw(cents("0", "2000"))
    total = principal + interest + penalty + fees
    return factories.loan(
        principal_outstanding=principal,
        interest_outstanding=interest,
        penalty_interest_outstanding=penalty,
        fees_outstanding=fees,
        # Mostly below the severe overdue share, so every tier gets exercised.
        overdue_amount=draw(
            st.decimals(Decimal(0), (total * Decimal("0.6")).quantize(Decimal("0.01")), places=2)
        ),
        days_past_due=draw(st.integers(1, 150)),
        contractual_instalment=draw(cents("0", "50000")),
        remaining_term_months=draw(st.integers(0, 300)),
        annual_interest_rate=draw(st.decimals(Decimal(0), Decimal("0.36"), places=4)),
    )


profiles = st.one_of(
    st.just(None),
    st.builds(
        factories.profile,
        monthly_income=cents("0", "100000"),
        essential_expenses=cents("0", "20000"),
        other_debt_payments=cents("0", "20000"),
        hardship_reason=st.sampled_from([None, "job_loss", "illness"]),
        temporary=st.booleans(),
        expected_recovery_months=st.one_of(st.none(), st.integers(1, 24)),
        lump_sum_available=st.one_of(st.none(), cents("0", "3000000")),
    ),
)
credits = st.builds(
    CreditRecord,
    delinquencies_last_24_months=st.integers(0, 4),
    broken_agreements=st.sampled_from([0, 0, 0, 1]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(loan=loans(), profile=profiles, credit=credits)
def test_every_schedule_repays_exactly_and_no_offer_breaks_affordability_or_policy(
    loan, profile, credit
):
    assessment = assess(loan, profile, credit, Engagement(), POLICY)
    proposal = propose(loan, assessment, POLICY, FIRST_DUE)
    limits = POLICY.plans.for_tier(assessment.tier)
    waivable = loan.penalty_interest_outstanding + loan.fees_outstanding
    for option in proposal.offered:
        terms, schedule = option.terms, option.schedule
        # Sums exactly to what is owed: principal parts = total outstanding - waived.
        assert schedule.total_principal == loan.total_outstanding - terms.waived
        assert schedule.total_payable == schedule.total_principal + schedule.total_interest
        assert all(i.principal + i.interest == i.amount >= 0 for i in schedule.instalments)
        # Policy limits.
        assert terms.plan_type in limits.allowed
        assert len(schedule.instalments) <= POLICY.catalogue.max_term_months
        assert terms.arrears_spread_months <= limits.max_arrears_spread_months
        if terms.plan_type is PlanType.LUMP_SUM_SETTLEMENT:
            assert schedule.total_payable >= loan.total_outstanding * limits.min_settlement_share
            assert assessment.affordability is not None
            assert assessment.affordability.lump_sum_available is not None
            assert schedule.total_payable <= assessment.affordability.lump_sum_available
        else:
            assert terms.extension_months <= limits.max_extension_months or (
                terms.plan_type is PlanType.ARREARS_SPREAD
            )
            assert terms.waived <= waivable * limits.max_waiver_share
            assert terms.annual_interest_rate >= loan.annual_interest_rate * (
                1 - limits.max_rate_reduction_share
            ) - Decimal("0.000001")
            # Affordability, instalment by instalment.
            affordability = assessment.affordability
            assert affordability is not None
            assert all(i.amount <= affordability.limit_for(i.number) for i in schedule.instalments)
    for excluded in proposal.excluded:
        assert excluded.reasons
    assert [o.rank for o in proposal.offered] == list(range(1, len(proposal.offered) + 1))
    recoveries = [o.expected_recovery for o in proposal.offered]
    assert recoveries == sorted(recoveries, reverse=True)


@settings(max_examples=200, deadline=None)
@given(
    loan=loans(),
    plan_type=st.sampled_from(
        [PlanType.TERM_EXTENSION, PlanType.REDUCED_PAYMENT, PlanType.ARREARS_SPREAD]
    ),
    term=st.integers(1, 360),
    reduced=st.integers(0, 12),
    reduction=st.decimals(Decimal(0), Decimal("0.9"), places=2),
    spread=st.integers(1, 12),
    first_due=st.dates(date(2026, 1, 1), date(2030, 12, 31)),
)
def test_any_schedule_sums_exactly_with_increasing_dates(
    loan, plan_type, term, reduced, reduction, spread, first_due
):
    terms = PlanTerms(
        plan_type=plan_type,
        term_months=max(term, spread),
        annual_interest_rate=loan.annual_interest_rate,
        reduced_months=min(reduced, term - 1) if plan_type is PlanType.REDUCED_PAYMENT else 0,
        reduction_share=reduction if plan_type is PlanType.REDUCED_PAYMENT else Decimal(0),
        arrears_spread_months=spread if plan_type is PlanType.ARREARS_SPREAD else 0,
    )
    schedule = build_schedule(loan, terms, first_due)  # the model validates sum, order, split
    assert schedule.total_principal == loan.total_outstanding
    assert len(schedule.instalments) == terms.term_months
    assert schedule.instalments[0].due_date == first_due
