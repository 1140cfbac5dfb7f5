"""Tiers with reason codes, and affordability."""

from __future__ import annotations

from decimal import Decimal

import pytest

from decisions.affordability import assess_affordability
from decisions.policy import load_policy
from decisions.tiering import assess
from schemas.assessment import CreditRecord, Engagement, HardshipKind, Tier
from tests import factories

pytestmark = pytest.mark.unit

POLICY = load_policy()
NONE = Engagement()
ANSWERED = Engagement(contact_attempts=2, conversations=1)


def test_no_information_is_non_responsive():
    assessment = assess(factories.loan(days_past_due=100), None, CreditRecord(), NONE, POLICY)
    assert assessment.tier is Tier.NON_RESPONSIVE
    assert assessment.reasons == ("NO_INFO_BY_DEADLINE", "NO_ANSWERED_CONTACT", "DPD_OVER_90")
    assert assessment.affordability is None
    assert assessment.policy_version == POLICY.version


def test_answered_but_no_information_keeps_only_the_deadline_reason():
    assessment = assess(factories.loan(), None, CreditRecord(), ANSWERED, POLICY)
    assert assessment.reasons == ("NO_INFO_BY_DEADLINE", "DPD_31_TO_90")


RICH = factories.profile(monthly_income=Decimal("20000.00"), hardship_reason=None)


def test_lateness_alone_is_never_wilful():
    """Capacity and 75 days late, but the borrower answered and declared an ending illness."""
    ill = factories.profile(
        monthly_income=Decimal("20000.00"), hardship_reason="illness", temporary=True
    )
    for borrower in (RICH, ill):
        assessment = assess(factories.loan(days_past_due=75), borrower, CreditRecord(), ANSWERED,
                            POLICY)  # fmt: skip
        assert assessment.tier is Tier.MODERATE
        assert "HAS_CAPACITY" in assessment.reasons


@pytest.mark.parametrize(
    ("credit", "engagement", "evidence"),
    [
        (CreditRecord(), Engagement(conversations=1, offers_declined=1), "DECLINED_OFFER"),
        (CreditRecord(), Engagement(plans_broken=1), "BROKE_AGREEMENT_IN_THIS_CASE"),
        (CreditRecord(), Engagement(instalments_missed=2), "MISSED_PROMISED_INSTALMENTS"),
        (CreditRecord(broken_agreements=1), NONE, "BROKEN_PREVIOUS_AGREEMENT"),
        (CreditRecord(delinquencies_last_24_months=3), NONE, "REPEATED_CURE_AND_RELAPSE"),
        (CreditRecord(), Engagement(contact_attempts=6), "NO_ENGAGEMENT"),
    ],
)
def test_capacity_with_evidence_of_unwillingness_is_wilful_and_says_which(
    credit, engagement, evidence
):
    assessment = assess(factories.loan(days_past_due=10), RICH, credit, engagement, POLICY)
    assert assessment.tier is Tier.WILFUL
    assert assessment.reasons == ("CAPACITY_WITHOUT_WILLINGNESS", evidence)


def test_evidence_without_capacity_is_not_wilful():
    assessment = assess(
        factories.loan(), factories.profile(), CreditRecord(), Engagement(offers_declined=1),
        POLICY,
    )  # fmt: skip
    assert assessment.tier is Tier.MODERATE


def test_capacity_early_and_clean_is_light_not_wilful():
    assessment = assess(factories.loan(days_past_due=10), RICH, CreditRecord(), NONE, POLICY)
    assert assessment.tier is Tier.LIGHT
    assert assessment.reasons == ("DPD_UP_TO_30", "GOOD_CREDIT_HISTORY", "NO_HARDSHIP_DECLARED")


@pytest.mark.parametrize(
    ("loan_changes", "credit", "reason"),
    [
        ({"days_past_due": 120}, CreditRecord(), "DPD_OVER_90"),
        ({}, CreditRecord(delinquencies_last_24_months=3), "REPEATED_DELINQUENCY"),
        ({}, CreditRecord(broken_agreements=1), "BROKEN_PREVIOUS_AGREEMENT"),
        ({"overdue_amount": Decimal("16000.00")}, CreditRecord(), "OVERDUE_SHARE_HIGH"),
    ],
)
def test_severe_reasons(loan_changes, credit, reason):
    assessment = assess(factories.loan(**loan_changes), factories.profile(), credit, NONE, POLICY)
    assert assessment.tier is Tier.SEVERE
    assert reason in assessment.reasons


def test_lasting_hardship_without_disposable_income_is_severe():
    broke = factories.profile(monthly_income=Decimal("5000.00"))
    assessment = assess(factories.loan(days_past_due=20), broke, CreditRecord(), NONE, POLICY)
    assert assessment.tier is Tier.SEVERE
    assert assessment.reasons == ("LASTING_HARDSHIP", "NO_DISPOSABLE_INCOME")


def test_prior_delinquency_makes_an_early_case_moderate():
    assessment = assess(
        factories.loan(days_past_due=10),
        factories.profile(temporary=True),
        CreditRecord(delinquencies_last_24_months=1),
        NONE,
        POLICY,
    )
    assert assessment.tier is Tier.MODERATE
    assert assessment.reasons == ("DPD_UP_TO_30", "TEMPORARY_HARDSHIP", "PRIOR_DELINQUENCY")


def test_affordability_is_the_policy_share_of_disposable_income_rounded_down():
    borrower = factories.profile(
        monthly_income=Decimal("8000.01"),
        essential_expenses=Decimal("4000.00"),
        other_debt_payments=Decimal("1000.00"),
    )
    affordability = assess_affordability(borrower, factories.loan(), POLICY)
    assert affordability.disposable_income == Decimal("3000.01")
    assert affordability.affordable_instalment == Decimal("1500.00")  # 1500.005 rounded down
    assert affordability.hardship is HardshipKind.LASTING


def test_negative_disposable_income_affords_nothing():
    borrower = factories.profile(monthly_income=Decimal("1000.00"))
    affordability = assess_affordability(borrower, factories.loan(), POLICY)
    assert affordability.disposable_income == Decimal("-5700.00")
    assert affordability.affordable_instalment == Decimal("0.00")


def test_temporary_hardship_recovers_to_the_contractual_instalment():
    borrower = factories.profile(temporary=True, expected_recovery_months=4)
    affordability = assess_affordability(borrower, factories.loan(), POLICY)
    assert affordability.hardship is HardshipKind.TEMPORARY
    assert affordability.limit_for(4) == Decimal("1150.00")
    assert affordability.limit_for(5) == Decimal("1329.62")


def test_temporary_hardship_beyond_the_policy_horizon_is_lasting():
    borrower = factories.profile(temporary=True, expected_recovery_months=18)
    affordability = assess_affordability(borrower, factories.loan(), POLICY)
    assert affordability.hardship is HardshipKind.LASTING
    assert affordability.limit_for(30) == Decimal("1150.00")


def test_profile_in_another_currency_is_refused():
    with pytest.raises(ValueError, match="currency: the declaration is in USD, the loan in CNY"):
        assess_affordability(factories.profile(currency="USD"), factories.loan(), POLICY)
