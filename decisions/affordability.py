"""Affordability (DESIGN §3 assess): what the borrower can pay each month."""

from __future__ import annotations

from decimal import Decimal

from decisions.policy import Policy
from schemas.assessment import Affordability, FinancialProfile, HardshipKind
from schemas.events import LoanOverdue
from schemas.money import quantize_down


def hardship_kind(profile: FinancialProfile, policy: Policy) -> tuple[HardshipKind, int | None]:
    """Temporary: recovery expected within the policy horizon; any other hardship is lasting."""
    if profile.hardship_reason is None and not profile.temporary:
        return HardshipKind.NONE, None
    if not profile.temporary:
        return HardshipKind.LASTING, None
    months = profile.expected_recovery_months or policy.affordability.default_recovery_months
    if months > policy.affordability.lasting_after_months:
        return HardshipKind.LASTING, None
    return HardshipKind.TEMPORARY, months


def profile_problem(profile: FinancialProfile, loan: LoanOverdue) -> str | None:
    """Why ``profile`` cannot be assessed against ``loan`` (one line naming the field), or None.
    For the case to refuse such a declaration when it arrives."""
    if profile.currency != loan.currency:
        return f"currency: the declaration is in {profile.currency}, the loan in {loan.currency}"
    return None


def assess_affordability(
    profile: FinancialProfile, loan: LoanOverdue, policy: Policy
) -> Affordability:
    """Disposable income = income - essential expenses - other debt service; the affordable
    instalment is the policy share of it, rounded down, never below zero. A borrower in
    temporary hardship is expected to afford the contractual instalment again after recovery."""
    problem = profile_problem(profile, loan)
    if problem is not None:
        raise ValueError(problem)
    disposable = profile.monthly_income - profile.essential_expenses - profile.other_debt_payments
    share = policy.affordability.max_share_of_disposable
    affordable = quantize_down(max(disposable, Decimal(0)) * share, loan.currency)
    kind, recovery_months = hardship_kind(profile, policy)
    return Affordability(
        currency=loan.currency,
        disposable_income=disposable,
        share=share,
        affordable_instalment=affordable,
        hardship=kind,
        recovery_months=recovery_months,
        post_recovery_instalment=(
            loan.contractual_instalment if kind is HardshipKind.TEMPORARY else None
        ),
        lump_sum_available=profile.lump_sum_available,
    )
