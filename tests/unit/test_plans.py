"""Plan search: never raises, respects affordability and every limit, ranks by expected
recovery, and what is signed is what was offered."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from decisions.plans import issue_agreement, propose, recovery
from decisions.policy import load_policy
from decisions.schedules import add_months, schedule_of
from decisions.tiering import assess
from schemas.assessment import Affordability, CreditRecord, Engagement, HardshipKind, Tier
from schemas.events import LoanOverdue
from schemas.money import MINOR_UNITS, quantum
from schemas.outbound import OptionSummary
from schemas.plan import (
    Agreement,
    AgreementRefused,
    ApprovalAuthority,
    Lever,
    Phase,
    PhaseKind,
    PlanOption,
    PlanProposal,
    PlanTerms,
)
from tests import factories
from tests.unit.test_schedules import check as check_against_exact_plan

pytestmark = pytest.mark.unit

POLICY = load_policy()
FIRST_DUE = date(2026, 4, 1)
ISSUED = datetime(2026, 3, 20, 12, tzinfo=UTC)


def proposal_for(loan: LoanOverdue, profile=None, credit=None, engagement=None) -> PlanProposal:
    assessment = assess(loan, profile, credit or CreditRecord(), engagement or Engagement(), POLICY)
    return propose(loan, assessment, POLICY, FIRST_DUE)


def agreement_for(option: PlanOption, loan: LoanOverdue) -> Agreement | AgreementRefused:
    return issue_agreement(
        agreement_id="agr-1",
        case_id=loan.case_id,
        option=option,
        loan=loan,
        policy=POLICY,
        issued_at=ISSUED,
    )


# --- examples ----------------------------------------------------------------------------------


def test_only_penalty_and_fees_owed_gives_a_plan_not_an_error():
    loan = factories.loan(
        principal_outstanding=Decimal(0),
        interest_outstanding=Decimal(0),
        penalty_interest_outstanding=Decimal("400.00"),
        fees_outstanding=Decimal("100.00"),
        overdue_amount=Decimal("500.00"),
        days_past_due=150,
    )
    proposal = proposal_for(loan, factories.profile())
    assert proposal.tier is Tier.SEVERE
    assert proposal.offered
    assert all(o.terms.balance > 0 for o in proposal.offered)


def test_a_settlement_of_a_matured_loan_is_not_a_term_extension():
    """Found by the property test below: a loan past maturity (no months left) settled in one
    payment counted a month of extension, over a tier that allows none."""
    borrower = factories.profile(
        monthly_income=Decimal("5000.00"), lump_sum_available=Decimal("20000.00")
    )
    settlement = proposal_for(factories.loan(days_past_due=150), borrower).option("settlement")
    matured = settlement.terms.model_copy(update={"remaining_term_months": 0})
    assert matured.term_months == 1
    assert matured.extension_months == 0


def test_nothing_outstanding_is_no_option_with_the_reason():
    zero = Decimal(0)
    loan = factories.loan(
        principal_outstanding=zero,
        interest_outstanding=zero,
        penalty_interest_outstanding=zero,
        fees_outstanding=zero,
        overdue_amount=zero,
        contractual_instalment=zero,
    )
    proposal = proposal_for(loan, factories.profile())
    assert proposal.offered == ()
    assert proposal.no_option_reasons == ("NOTHING_OUTSTANDING",)


def test_tiny_arrears_spread_over_months_is_whole_minor_units():
    loan = factories.loan(
        principal_outstanding=Decimal("0.04"),
        interest_outstanding=Decimal(0),
        penalty_interest_outstanding=Decimal(0),
        fees_outstanding=Decimal(0),
        overdue_amount=Decimal("0.04"),
        contractual_instalment=Decimal("0.01"),
        remaining_term_months=6,
        days_past_due=10,
    )
    proposal = proposal_for(loan, factories.profile(hardship_reason=None))
    assert proposal.offered
    for option in proposal.offered:
        assert all(i.amount >= Decimal("0.01") for i in schedule_of(option.terms).instalments)


@pytest.mark.parametrize("currency", ["CNY", "JPY"])
@pytest.mark.parametrize("remaining", [0, 1, 480, 600])
@pytest.mark.parametrize("rate", ["0", "0.36", "1"])
def test_extreme_loans_never_raise(currency: str, remaining: int, rate: str):
    """Every part at the largest inbound amount (just below 10^16), terms from matured to beyond
    the policy's longest, rates from 0 to 100 %, budgets from the whole debt to almost nothing."""
    big = Decimal("9999999999999999.99") if currency == "CNY" else Decimal("9999999999999999")
    loan = factories.loan(
        currency=currency,
        principal_outstanding=big,
        interest_outstanding=big,
        penalty_interest_outstanding=big,
        fees_outstanding=big,
        overdue_amount=big,
        contractual_instalment=big,
        remaining_term_months=remaining,
        annual_interest_rate=Decimal(rate),
    )
    both = TypeAdapter(Agreement | AgreementRefused)
    for income in (big, Decimal(1)):
        borrower = factories.profile(
            currency=currency,
            monthly_income=income,
            essential_expenses=Decimal(0),
            other_debt_payments=Decimal(0),
            temporary=True,
            expected_recovery_months=6,
            lump_sum_available=big,
        )
        proposal = proposal_for(loan, borrower)
        assert proposal.offered or proposal.no_option_reasons
        if remaining > POLICY.search.max_term_months:
            assert "TERM_OVER_POLICY_MAXIMUM" in proposal.no_option_reasons
        for option in proposal.offered:
            agreement = agreement_for(option, loan)
            assert isinstance(agreement, Agreement)
            assert both.validate_json(both.dump_json(agreement)) == agreement


def test_non_responsive_gets_no_options_and_says_why():
    loan = factories.loan()
    proposal = proposal_for(loan)
    assert proposal.tier is Tier.NON_RESPONSIVE
    assert proposal.offered == ()
    assert proposal.no_option_reasons == ("NO_PLAN_ALLOWED_FOR_TIER",)
    assert all(e.reasons == ("LEVER_NOT_ALLOWED_FOR_TIER",) for e in proposal.excluded)


def test_settlement_asks_what_the_borrower_has_and_needs_the_committee():
    borrower = factories.profile(
        monthly_income=Decimal("5000.00"), lump_sum_available=Decimal("20000.00")
    )
    loan = factories.loan(days_past_due=150)
    proposal = proposal_for(loan, borrower)
    settlement = proposal.option("settlement")
    assert settlement.terms.levers == (Lever.SETTLEMENT,)
    schedule = schedule_of(settlement.terms)
    assert [(i.amount, i.due_date) for i in schedule.instalments] == [
        (Decimal("20000.00"), FIRST_DUE)
    ]
    # 30,800.00 owed: 10,800.00 forgiven, fees first, then penalty, interest, principal.
    terms = settlement.terms
    assert (terms.waived_fees, terms.waived_penalty, terms.waived_interest) == (
        Decimal("100.00"),
        Decimal("400.00"),
        Decimal("300.00"),
    )
    assert terms.waived_principal == Decimal("10000.00")
    assert settlement.concession_share == Decimal("0.350650")  # 10,800 / 30,800 rounded up
    assert settlement.required_authority is ApprovalAuthority.CREDIT_COMMITTEE


def test_settlement_below_the_policy_minimum_is_excluded_with_the_reason():
    borrower = factories.profile(
        monthly_income=Decimal("5000.00"), lump_sum_available=Decimal("18000.00")
    )
    proposal = proposal_for(factories.loan(days_past_due=150), borrower)
    excluded = {e.option_id: e.reasons for e in proposal.excluded}
    # 60 % of 30,800.00 is 18,480.00.
    assert excluded["settlement"] == ("LUMP_SUM_BELOW_MINIMUM_SETTLEMENT",)


def test_a_loan_that_moved_since_the_offer_is_refused_not_re_priced():
    loan = factories.loan()
    option = proposal_for(loan, factories.profile()).offered[0]
    paid_some = loan.model_copy(update={"interest_outstanding": Decimal("0.00")})
    refused = agreement_for(option, paid_some)
    assert isinstance(refused, AgreementRefused)
    assert refused.reasons == ("LOAN_CHANGED_SINCE_OFFER", "INTEREST_OUTSTANDING_CHANGED")
    in_usd = loan.model_copy(update={"currency": "USD"})
    refused = agreement_for(option, in_usd)
    assert isinstance(refused, AgreementRefused)
    assert refused.reasons == ("LOAN_CHANGED_SINCE_OFFER", "CURRENCY_CHANGED")


def test_affordability_in_another_currency_is_refused_naming_the_field():
    loan = factories.loan()
    assessment = assess(loan, factories.profile(), CreditRecord(), Engagement(), POLICY)
    assert assessment.affordability is not None
    foreign = assessment.model_copy(
        update={"affordability": assessment.affordability.model_copy(update={"currency": "USD"})}
    )
    with pytest.raises(ValueError, match=r"^assessment\.affordability\.currency: USD"):
        propose(loan, foreign, POLICY, FIRST_DUE)
    with pytest.raises(ValueError, match=r"^currency: the declaration is in USD"):
        assess(loan, factories.profile(currency="USD"), CreditRecord(), Engagement(), POLICY)


def test_proposal_and_agreement_round_trip_through_json():
    loan = factories.loan()
    proposal = proposal_for(loan, factories.profile())
    assert PlanProposal.model_validate_json(proposal.model_dump_json()) == proposal
    agreement = agreement_for(proposal.offered[0], loan)
    assert isinstance(agreement, Agreement)
    assert agreement.schedule.instalments[0].due_date == date(2026, 4, 19)  # 30 days later
    assert Agreement.model_validate_json(agreement.model_dump_json()) == agreement


def test_an_option_is_small():
    """A case keeps its proposals for months: an option carries no schedule."""
    loan = factories.loan(remaining_term_months=300, product="mortgage")
    proposal = proposal_for(loan, factories.profile(monthly_income=Decimal("40000.00")))
    assert proposal.offered
    assert all(len(o.model_dump_json()) < 2000 for o in proposal.offered)
    assert len(proposal.model_dump_json()) < 12_000


# --- properties over random loans ---------------------------------------------------------------


@st.composite
def loans(draw: st.DrawFn) -> LoanOverdue:
    currency = draw(st.sampled_from(["CNY", "CNY", "JPY"]))
    unit = quantum(currency)

    def amount(high: int) -> Decimal:
        return Decimal(draw(st.integers(0, high * 10 ** MINOR_UNITS[currency]))) * unit

    scale = 10 ** draw(st.integers(0, 12))
    principal = amount(scale)
    interest, penalty, fees = amount(scale // 20 + 1), amount(scale // 50 + 1), amount(500)
    total = principal + interest + penalty + fees
    overdue = (total * Decimal(draw(st.integers(0, 100))) / 100).quantize(unit)
    return factories.loan(
        currency=currency,
        principal_outstanding=principal,
        interest_outstanding=interest,
        penalty_interest_outstanding=penalty,
        fees_outstanding=fees,
        overdue_amount=min(overdue, total),
        days_past_due=draw(st.sampled_from([5, 30, 31, 60, 90, 91, 150])),
        contractual_instalment=amount(scale // 10 + 1),
        remaining_term_months=draw(st.integers(0, 480)),
        annual_interest_rate=draw(st.decimals(Decimal(0), Decimal("0.36"), places=4)),
    )


@st.composite
def profiles(draw: st.DrawFn, loan: LoanOverdue):
    if not draw(st.sampled_from([True] * 9 + [False])):
        return None
    currency = loan.currency
    unit = quantum(currency)
    instalment = max(loan.contractual_instalment, unit * 100)
    # Affordable instalment from nothing to three times the contractual one.
    share = Decimal(draw(st.integers(0, 300))) / 100

    def money(value: Decimal) -> Decimal:
        return value.quantize(unit)

    expenses = money(instalment * Decimal(draw(st.integers(0, 300))) / 100)
    return factories.profile(
        currency=currency,
        monthly_income=money(expenses + instalment * share * 2),
        essential_expenses=expenses,
        other_debt_payments=Decimal(0),
        **draw(
            st.sampled_from(
                [
                    {"hardship_reason": None, "temporary": False},
                    {"hardship_reason": "illness", "temporary": False},
                    {"hardship_reason": "job_loss", "temporary": True},
                ]
            )
        ),
        expected_recovery_months=draw(st.one_of(st.none(), st.integers(1, 24))),
        lump_sum_available=draw(
            st.one_of(st.none(), st.just(money(loan.total_outstanding * share / 3)))
        ),
    )


engagements = st.one_of(
    st.just(Engagement()),
    st.just(Engagement(contact_attempts=3, conversations=1)),
    st.builds(
        Engagement,
        contact_attempts=st.integers(0, 10),
        conversations=st.integers(0, 3),
        offers_declined=st.sampled_from([0, 0, 1]),
        plans_broken=st.sampled_from([0, 0, 1]),
        instalments_missed=st.integers(0, 3),
    ),
)
credits = st.builds(
    CreditRecord,
    delinquencies_last_24_months=st.sampled_from([0, 0, 0, 1, 3]),
    broken_agreements=st.sampled_from([0, 0, 0, 1]),
)


def plan_month(option: PlanOption, due: date) -> int:
    first = option.terms.first_due
    return (due.year - first.year) * 12 + due.month - first.month + 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), credit=credits, engagement=engagements)
def test_any_loan_gets_options_that_fit_the_policy_and_the_budget_or_reasons(
    data, credit, engagement
):
    loan = data.draw(loans())
    profile = data.draw(profiles(loan))
    assessment = assess(loan, profile, credit, engagement, POLICY)
    proposal = propose(loan, assessment, POLICY, FIRST_DUE)  # never raises
    limits = POLICY.plans.for_tier(assessment.tier)
    owed = loan.total_outstanding
    affordability = assessment.affordability
    if not proposal.offered:
        assert proposal.no_option_reasons
    assert len(proposal.offered) <= POLICY.search.max_offered
    assert all(e.reasons for e in proposal.excluded)
    for option in proposal.offered:
        terms = option.terms
        assert affordability is not None
        schedule = schedule_of(terms)
        # The figures the case shows are the schedule's.
        amounts = [i.amount for i in schedule.instalments]
        assert (option.instalment_count, option.first_instalment) == (len(amounts), amounts[0])
        assert (option.max_instalment, option.total_payable) == (max(amounts), sum(amounts))
        assert OptionSummary.of(option).first_instalment.amount == amounts[0]
        # Sums exact, every instalment within a minor unit of the exact plan (rational reference).
        check_against_exact_plan(terms)
        assert schedule.total_principal == terms.balance + schedule.capitalised_interest
        assert terms.balance + terms.waived == owed
        # Policy: levers of the tier, each within its limit, and the combination.
        assert set(terms.levers) <= set(limits.levers)
        assert terms.term_months <= POLICY.search.max_term_months
        assert terms.extension_months <= limits.max_extension_months
        if Lever.ARREARS_SPREAD not in terms.levers:
            assert terms.relief_months <= limits.max_relief_months
        else:
            assert terms.relief_months <= limits.max_arrears_spread_months
        waivable = loan.penalty_interest_outstanding + loan.fees_outstanding
        if not terms.is_settlement:
            assert terms.waived_penalty + terms.waived_fees <= waivable * (
                limits.max_penalty_fee_waiver_share
            )
            assert terms.waived_interest <= loan.interest_outstanding * (
                limits.max_interest_waiver_share
            )
            assert terms.waived_principal == 0
            assert terms.annual_interest_rate >= loan.annual_interest_rate * (
                1 - limits.max_rate_reduction_share
            )
        assert option.concession_share <= limits.max_concession_share
        assert option.concession >= terms.waived
        # Affordability, month by month.
        for instalment in schedule.instalments:
            if terms.is_settlement:
                assert affordability.lump_sum_available is not None
                assert instalment.amount <= affordability.lump_sum_available
                assert instalment.amount >= owed * limits.min_settlement_share
            else:
                limit = affordability.limit_for(plan_month(option, instalment.due_date))
                assert instalment.amount <= limit
        # The recovery model: never above what is owed.
        assert 0 <= option.expected_recovery <= owed
        assert 0 <= option.completion_probability <= 1
        assert option.required_authority is POLICY.approval.authority_for(
            option.concession_share, terms.levers
        )
        # What is signed is what was offered.
        agreement = agreement_for(option, loan)
        assert isinstance(agreement, Agreement)
        assert [i.amount for i in agreement.schedule.instalments] == amounts
        assert agreement.terms == terms.model_copy(update={"first_due": date(2026, 4, 19)})
        assert agreement.schedule.instalments[0].due_date >= date(2026, 4, 19)
    # A concession is offered only where it recovers more than every plan without one.
    free = [o.expected_recovery for o in proposal.offered if o.concession == 0]
    for option in proposal.offered:
        if option.concession > 0 and free:
            assert option.expected_recovery > max(free)
    # Ranking: never a lower expected recovery above a higher one.
    ranked = sorted(proposal.offered, key=lambda o: o.rank)
    assert [o.rank for o in ranked] == list(range(1, len(ranked) + 1))
    recoveries = [o.expected_recovery for o in ranked]
    assert recoveries == sorted(recoveries, reverse=True)


def test_completion_falls_with_length_and_with_the_share_of_the_budget():
    loan = factories.loan()
    roomy = factories.profile(monthly_income=Decimal("12000.00"))
    tight = factories.profile(monthly_income=Decimal("9000.00"))
    by_budget = [proposal_for(loan, borrower).offered for borrower in (roomy, tight)]
    assert all(by_budget)
    roomy_best = max(by_budget[0], key=lambda o: o.completion_probability)
    tight_best = max(by_budget[1], key=lambda o: o.completion_probability)
    # The tight budget needs a longer plan that uses more of it: lower completion.
    assert tight_best.terms.term_months >= roomy_best.terms.term_months
    assert tight_best.completion_probability < roomy_best.completion_probability


def test_relief_phases_follow_the_recovery_horizon():
    loan = factories.loan(days_past_due=20)
    for months in (3, 6):
        borrower = factories.profile(
            monthly_income=Decimal("7500.00"), temporary=True, expected_recovery_months=months
        )
        proposal = proposal_for(loan, borrower)
        relief = [o for o in proposal.offered if o.terms.phases[0].kind is not PhaseKind.LEVEL]
        assert relief, proposal.excluded
        assert all(o.terms.relief_months == months for o in relief)


def test_exact_recovery_never_exceeds_what_is_owed_even_at_high_rates():
    loan = factories.loan(annual_interest_rate=Decimal("0.36"), remaining_term_months=60)
    proposal = proposal_for(loan, factories.profile(monthly_income=Decimal("20000.00")))
    assert proposal.offered
    for option in proposal.offered:
        payable = Fraction(option.total_payable)
        assert payable > Fraction(loan.total_outstanding)  # interest makes it more ...
        assert option.expected_recovery <= loan.total_outstanding  # ... but not recovery
    assert add_months(FIRST_DUE, 1) == date(2026, 5, 1)


def level_plan(balance: Decimal, months: int, rate: Decimal) -> PlanTerms:
    return PlanTerms(
        levers=(Lever.TERM_EXTENSION,),
        currency="CNY",
        first_due=FIRST_DUE,
        annual_interest_rate=rate,
        contractual_rate=rate,
        remaining_term_months=1,
        principal=balance,
        interest=Decimal(0),
        penalty=Decimal(0),
        fees=Decimal(0),
        phases=(Phase(kind=PhaseKind.LEVEL, months=months),),
    )


@settings(max_examples=60, deadline=None)
@given(
    balance=st.decimals(Decimal("100.00"), Decimal("1000000.00"), places=2),
    months=st.integers(1, 300),
    longer=st.integers(1, 60),
    rate=st.decimals(Decimal(0), Decimal("0.36"), places=4),
    tier=st.sampled_from([Tier.LIGHT, Tier.MODERATE, Tier.SEVERE, Tier.WILFUL]),
)
def test_completion_falls_with_length_and_with_the_budget_share(
    balance, months, longer, rate, tier
):
    short = level_plan(balance, months, rate)
    payment = schedule_of(short).max_instalment
    budget = Affordability(
        currency="CNY",
        disposable_income=payment * 4,
        share=Decimal("0.5"),
        affordable_instalment=payment * 2,
        hardship=HardshipKind.NONE,
    )
    # The same instalment for longer (a larger balance) completes less often ...
    stretched = (balance * (months + longer) / months).quantize(Decimal("0.01"))
    long = level_plan(stretched, months + longer, Decimal(0))
    flat = level_plan(balance, months, Decimal(0))
    assert (
        recovery(long, budget, tier, POLICY).completion_probability
        <= recovery(flat, budget, tier, POLICY).completion_probability
    )
    # ... and the same length asking more of the budget completes less often.
    tighter = budget.model_copy(update={"affordable_instalment": payment})
    roomy = recovery(short, budget, tier, POLICY).completion_probability
    tight = recovery(short, tighter, tier, POLICY).completion_probability
    assert tight < roomy or roomy < Decimal("0.00001")  # both round to ~0 over decades
    for terms in (short, long, flat):
        assert recovery(terms, budget, tier, POLICY).expected_recovery <= terms.total_outstanding
