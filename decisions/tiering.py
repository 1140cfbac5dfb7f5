"""Tiering (DESIGN §3 assess, seed 000 §4.1, 003 §4.3): every tier comes with reason codes.

Order of the rules, first match wins:

1. no financial information by the deadline        -> non_responsive
2. capacity to pay AND evidence of unwillingness   -> wilful ("can pay, won't")
3. very late, repeatedly delinquent, broken plans,
   mostly overdue, or lasting hardship with no
   disposable income                               -> severe
4. early, clean history, no lasting hardship       -> light
5. everything else                                 -> moderate

Evidence of unwillingness (each its own reason code): offers declined in this case, promised
instalments missed or an agreement broken in this case, an agreement broken before, repeated
cures and relapses in the credit record, or declared capacity with no conversation at all after
many contact attempts. Lateness is never evidence: it is why there is a case.
"""

from __future__ import annotations

from decisions.affordability import assess_affordability
from decisions.policy import Policy
from schemas.assessment import (
    Affordability,
    Assessment,
    CreditRecord,
    Engagement,
    FinancialProfile,
    HardshipKind,
    Tier,
)
from schemas.events import LoanOverdue


def days_past_due_reason(days_past_due: int, policy: Policy) -> str:
    light, moderate = policy.tiers.light_max_dpd, policy.tiers.moderate_max_dpd
    if days_past_due <= light:
        return f"DPD_UP_TO_{light}"
    if days_past_due <= moderate:
        return f"DPD_{light + 1}_TO_{moderate}"
    return f"DPD_OVER_{moderate}"


def assess(
    loan: LoanOverdue,
    profile: FinancialProfile | None,
    credit: CreditRecord,
    engagement: Engagement,
    policy: Policy,
) -> Assessment:
    """Tier the case. ``profile`` is None when the borrower gave no information by the deadline.

    Raises ``ValueError`` naming the field only for a profile in another currency than the loan
    (``decisions.affordability.profile_problem``: the case should refuse it on arrival).
    """
    dpd_reason = days_past_due_reason(loan.days_past_due, policy)
    if profile is None:
        reasons = ["NO_INFO_BY_DEADLINE"]
        if engagement.conversations == 0:
            reasons.append("NO_ANSWERED_CONTACT")
        return _assessment(Tier.NON_RESPONSIVE, [*reasons, dpd_reason], loan, policy, None)

    affordability = assess_affordability(profile, loan, policy)
    tier, reasons = _tier_with_information(
        loan, credit, engagement, affordability, policy, dpd_reason
    )
    return _assessment(tier, reasons, loan, policy, affordability)


def unwillingness(credit: CreditRecord, engagement: Engagement, policy: Policy) -> list[str]:
    """Reason codes of the evidence that the borrower will not pay (capacity aside)."""
    thresholds = policy.tiers
    evidence = []
    if engagement.offers_declined >= thresholds.wilful_min_declined_offers:
        evidence.append("DECLINED_OFFER")
    if engagement.plans_broken > 0:
        evidence.append("BROKE_AGREEMENT_IN_THIS_CASE")
    if engagement.instalments_missed >= thresholds.wilful_min_missed_instalments:
        evidence.append("MISSED_PROMISED_INSTALMENTS")
    if credit.broken_agreements >= thresholds.severe_min_broken_agreements:
        evidence.append("BROKEN_PREVIOUS_AGREEMENT")
    if credit.delinquencies_last_24_months >= thresholds.wilful_min_prior_delinquencies:
        evidence.append("REPEATED_CURE_AND_RELAPSE")
    if (
        engagement.conversations == 0
        and engagement.counter_proposals == 0
        and engagement.contact_attempts >= thresholds.wilful_min_unanswered_contacts
    ):
        evidence.append("NO_ENGAGEMENT")
    return evidence


def _tier_with_information(
    loan: LoanOverdue,
    credit: CreditRecord,
    engagement: Engagement,
    affordability: Affordability,
    policy: Policy,
    dpd_reason: str,
) -> tuple[Tier, list[str]]:
    thresholds = policy.tiers
    repeated = credit.delinquencies_last_24_months >= thresholds.severe_min_prior_delinquencies
    broken = credit.broken_agreements >= thresholds.severe_min_broken_agreements

    # Capacity: the borrower could pay what is due each month out of disposable income.
    monthly_due = loan.contractual_instalment or loan.overdue_amount
    capacity = (
        affordability.affordable_instalment > 0
        and affordability.affordable_instalment >= thresholds.wilful_capacity_ratio * monthly_due
    )
    evidence = unwillingness(credit, engagement, policy)
    if capacity and evidence:
        return Tier.WILFUL, ["CAPACITY_WITHOUT_WILLINGNESS", *evidence]

    hardship_reason = {
        HardshipKind.NONE: "NO_HARDSHIP_DECLARED",
        HardshipKind.TEMPORARY: "TEMPORARY_HARDSHIP",
        HardshipKind.LASTING: "LASTING_HARDSHIP",
    }[affordability.hardship]
    severe = []
    if loan.days_past_due > thresholds.moderate_max_dpd:
        severe.append(dpd_reason)
    if repeated:
        severe.append("REPEATED_DELINQUENCY")
    if broken:
        severe.append("BROKEN_PREVIOUS_AGREEMENT")
    if engagement.plans_broken > 0:
        severe.append("BROKE_AGREEMENT_IN_THIS_CASE")
    total = loan.total_outstanding
    if total > 0 and loan.overdue_amount / total >= thresholds.severe_min_overdue_share:
        severe.append("OVERDUE_SHARE_HIGH")
    if affordability.hardship is HardshipKind.LASTING and affordability.disposable_income <= 0:
        severe.extend(["LASTING_HARDSHIP", "NO_DISPOSABLE_INCOME"])
    if severe:
        return Tier.SEVERE, severe

    clean_history = (
        credit.delinquencies_last_24_months <= thresholds.light_max_prior_delinquencies
        and credit.broken_agreements == 0
    )
    if (
        loan.days_past_due <= thresholds.light_max_dpd
        and clean_history
        and affordability.hardship is not HardshipKind.LASTING
    ):
        return Tier.LIGHT, [dpd_reason, "GOOD_CREDIT_HISTORY", hardship_reason]

    reasons = [dpd_reason, hardship_reason]
    if not clean_history:
        reasons.append("PRIOR_DELINQUENCY")
    if capacity:
        reasons.append("HAS_CAPACITY")
    return Tier.MODERATE, reasons


def _assessment(
    tier: Tier,
    reasons: list[str],
    loan: LoanOverdue,
    policy: Policy,
    affordability: Affordability | None,
) -> Assessment:
    return Assessment(
        tier=tier,
        reasons=tuple(reasons),
        policy_version=policy.version,
        days_past_due=loan.days_past_due,
        affordability=affordability,
    )
