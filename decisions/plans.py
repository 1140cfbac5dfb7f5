"""Plan options (DESIGN §3 propose): build, exclude with reasons, rank, set approval authority.

Ranking: expected recovery for the lender, highest first::

    PV          = sum over instalments k of  amount_k / (1 + d/12)^k
    utilisation = max over k of  amount_k / limit_k      (lump sum: amount / lump sum available)
    p           = base_completion(tier) x (1 - utilisation_penalty x utilisation)
    expected    = p x PV

``d`` is ``ranking.discount_rate``; ``limit_k`` the affordable instalment for month ``k``
(temporary hardship: the contractual instalment after recovery). Ties: lower approval
authority, then fewer instalments, then option id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_CEILING, Decimal, localcontext

from decisions.policy import Policy, TierPlans
from decisions.schedules import build_schedule
from schemas.assessment import Affordability, Assessment
from schemas.events import LoanOverdue
from schemas.money import quantize, quantize_down, quantum
from schemas.plan import (
    Agreement,
    ExcludedOption,
    PlanOption,
    PlanProposal,
    PlanTerms,
    PlanType,
    RepaymentSchedule,
)


@dataclass(frozen=True)
class _Candidate:
    option_id: str
    plan_type: PlanType
    terms: PlanTerms | None
    """None when the option cannot even be built; ``reasons`` says why."""
    reasons: tuple[str, ...] = ()


def propose(
    loan: LoanOverdue, assessment: Assessment, policy: Policy, first_due: date
) -> PlanProposal:
    """Every option of the policy's catalogue, either offered (ranked) or excluded (reasons)."""
    if assessment.policy_version != policy.version:
        raise ValueError(
            f"policy_version: assessment made under {assessment.policy_version}, "
            f"not {policy.version}"
        )
    tier_plans = policy.plans.for_tier(assessment.tier)
    scored: list[tuple[PlanOption, tuple[object, ...]]] = []
    excluded: list[ExcludedOption] = []
    for candidate in _candidates(loan, assessment.affordability, tier_plans, policy):
        plan_type = candidate.plan_type
        reasons = list(candidate.reasons)
        if plan_type not in tier_plans.allowed:
            reasons.insert(0, "PLAN_TYPE_NOT_ALLOWED_FOR_TIER")
        schedule = None
        if candidate.terms is not None and not reasons:
            schedule = build_schedule(loan, candidate.terms, first_due)
            reasons.extend(_limit_violations(candidate.terms, schedule, tier_plans, policy))
            reasons.extend(_affordability_violations(candidate.terms, schedule, assessment))
        if reasons or schedule is None or candidate.terms is None:
            excluded.append(
                ExcludedOption(
                    option_id=candidate.option_id,
                    plan_type=plan_type,
                    reasons=tuple(dict.fromkeys(reasons)),
                )
            )
            continue
        scored.append(_score(candidate, schedule, loan, assessment, policy))
    scored.sort(key=lambda pair: pair[1])
    offered = tuple(
        option.model_copy(update={"rank": rank}) for rank, (option, _) in enumerate(scored, 1)
    )
    return PlanProposal(
        policy_version=policy.version,
        tier=assessment.tier,
        currency=loan.currency,
        offered=offered,
        excluded=tuple(excluded),
    )


def issue_agreement(
    *,
    agreement_id: str,
    case_id: str,
    option: PlanOption,
    loan: LoanOverdue,
    policy: Policy,
    issued_at: datetime,
) -> Agreement:
    """The agreement for a chosen option, its schedule re-dated from the issue date."""
    first_due = issued_at.date() + timedelta(days=policy.durations.first_instalment_days)
    return Agreement(
        agreement_id=agreement_id,
        case_id=case_id,
        policy_version=policy.version,
        option_id=option.option_id,
        terms=option.terms,
        schedule=build_schedule(loan, option.terms, first_due),
        required_authority=option.required_authority,
        issued_at=issued_at,
        expires_at=issued_at + policy.durations.signature_expiry,
        default_after_missed_instalments=policy.durations.default_after_missed_instalments,
    )


def _candidates(
    loan: LoanOverdue,
    affordability: Affordability | None,
    tier_plans: TierPlans,
    policy: Policy,
) -> list[_Candidate]:
    catalogue = policy.catalogue
    remaining = loan.remaining_term_months
    rate = loan.annual_interest_rate
    candidates: list[_Candidate] = []

    for months in catalogue.arrears_spread_months:
        reasons = () if loan.overdue_amount > 0 else ("NO_ARREARS",)
        term = max(remaining, months)
        candidates.append(
            _Candidate(
                f"arrears_spread_{months}m",
                PlanType.ARREARS_SPREAD,
                PlanTerms(
                    plan_type=PlanType.ARREARS_SPREAD,
                    term_months=term,
                    annual_interest_rate=rate,
                    extension_months=term - remaining,
                    arrears_spread_months=months,
                ),
                reasons,
            )
        )

    for months in catalogue.extension_months:
        candidates.append(
            _Candidate(
                f"term_extension_{months}m",
                PlanType.TERM_EXTENSION,
                PlanTerms(
                    plan_type=PlanType.TERM_EXTENSION,
                    term_months=remaining + months,
                    annual_interest_rate=rate,
                    extension_months=months,
                ),
            )
        )

    reduced_term = max(remaining + catalogue.reduced_payment_extension_months, 2)
    candidates.append(
        _Candidate(
            "reduced_payment",
            PlanType.REDUCED_PAYMENT,
            PlanTerms(
                plan_type=PlanType.REDUCED_PAYMENT,
                term_months=reduced_term,
                annual_interest_rate=rate,
                extension_months=reduced_term - remaining,
                reduced_months=min(catalogue.reduced_payment_months, reduced_term - 1),
                reduction_share=catalogue.reduced_payment_share,
            ),
        )
    )

    term = max(remaining, 1)
    if rate == 0:
        candidates.append(
            _Candidate("rate_reduction", PlanType.RATE_REDUCTION, None, ("RATE_ALREADY_ZERO",))
        )
    else:
        new_rate = (rate * (1 - tier_plans.max_rate_reduction_share)).quantize(Decimal("1e-6"))
        candidates.append(
            _Candidate(
                "rate_reduction",
                PlanType.RATE_REDUCTION,
                PlanTerms(
                    plan_type=PlanType.RATE_REDUCTION,
                    term_months=term,
                    annual_interest_rate=new_rate,
                ),
            )
        )

    waivable = loan.penalty_interest_outstanding + loan.fees_outstanding
    if waivable == 0:
        candidates.append(
            _Candidate("penalty_waiver", PlanType.PENALTY_WAIVER, None, ("NOTHING_TO_WAIVE",))
        )
    else:
        # The seed's combined concession: part of the penalty waived and the term extended.
        waiver_term = max(remaining + tier_plans.max_extension_months, 1)
        candidates.append(
            _Candidate(
                "penalty_waiver",
                PlanType.PENALTY_WAIVER,
                PlanTerms(
                    plan_type=PlanType.PENALTY_WAIVER,
                    term_months=waiver_term,
                    annual_interest_rate=rate,
                    extension_months=waiver_term - remaining,
                    waived=quantize_down(waivable * tier_plans.max_waiver_share, loan.currency),
                ),
            )
        )

    candidates.append(_settlement_candidate(loan, affordability, tier_plans))
    return candidates


def _settlement_candidate(
    loan: LoanOverdue, affordability: Affordability | None, tier_plans: TierPlans
) -> _Candidate:
    """Ask for as much as the borrower has, at least the policy minimum, at most everything."""
    total = loan.total_outstanding
    minimum = (total * tier_plans.min_settlement_share).quantize(
        quantum(loan.currency), rounding=ROUND_CEILING
    )
    available = affordability.lump_sum_available if affordability else None
    plan_type = PlanType.LUMP_SUM_SETTLEMENT
    if available is None:
        return _Candidate(plan_type.value, plan_type, None, ("NO_LUMP_SUM_DECLARED",))
    if available < minimum or available == 0:
        return _Candidate(plan_type.value, plan_type, None, ("LUMP_SUM_BELOW_MINIMUM_SETTLEMENT",))
    settlement = min(available, total)
    return _Candidate(
        plan_type.value,
        plan_type,
        PlanTerms(
            plan_type=PlanType.LUMP_SUM_SETTLEMENT,
            term_months=1,
            annual_interest_rate=Decimal(0),
            waived=total - settlement,
        ),
    )


def _limit_violations(
    terms: PlanTerms, schedule: RepaymentSchedule, tier_plans: TierPlans, policy: Policy
) -> list[str]:
    reasons = []
    extension_used = terms.plan_type in (
        PlanType.TERM_EXTENSION,
        PlanType.REDUCED_PAYMENT,
        PlanType.PENALTY_WAIVER,
    )
    if extension_used and terms.extension_months > tier_plans.max_extension_months:
        reasons.append("EXTENSION_OVER_TIER_LIMIT")
    if terms.arrears_spread_months > tier_plans.max_arrears_spread_months:
        reasons.append("ARREARS_SPREAD_OVER_TIER_LIMIT")
    if len(schedule.instalments) > policy.catalogue.max_term_months:
        reasons.append("TERM_OVER_POLICY_MAXIMUM")
    return reasons


def _affordability_violations(
    terms: PlanTerms, schedule: RepaymentSchedule, assessment: Assessment
) -> list[str]:
    affordability = assessment.affordability
    if affordability is None:
        return ["NO_FINANCIAL_INFORMATION"]
    if terms.plan_type is PlanType.LUMP_SUM_SETTLEMENT:
        return []  # checked against the declared lump sum when the candidate was built
    if any(i.amount > affordability.limit_for(i.number) for i in schedule.instalments):
        return ["INSTALMENT_OVER_AFFORDABLE"]
    return []


def _score(
    candidate: _Candidate,
    schedule: RepaymentSchedule,
    loan: LoanOverdue,
    assessment: Assessment,
    policy: Policy,
) -> tuple[PlanOption, tuple[object, ...]]:
    terms = candidate.terms
    affordability = assessment.affordability
    assert terms is not None and affordability is not None  # offered options only
    ranking = policy.ranking
    total = loan.total_outstanding
    with localcontext() as context:
        context.prec = 34
        discount = 1 + ranking.discount_rate / 12
        present_value = sum(
            (i.amount / discount**i.number for i in schedule.instalments), Decimal(0)
        )
        if terms.plan_type is PlanType.LUMP_SUM_SETTLEMENT:
            assert affordability.lump_sum_available  # set, or the candidate was excluded
            utilisation = schedule.total_payable / affordability.lump_sum_available
        else:
            utilisation = max(
                _usage(i.amount, affordability.limit_for(i.number)) for i in schedule.instalments
            )
        utilisation = min(utilisation, Decimal(1))
        probability = ranking.base_completion(assessment.tier) * (
            1 - ranking.utilisation_penalty * utilisation
        )
        probability = probability.quantize(Decimal("1e-6"))
        expected = quantize(probability * present_value, loan.currency)
        exact_waiver_share = terms.waived / total
        authority = policy.approval.authority_for(
            exact_waiver_share, rate_reduced=terms.annual_interest_rate < loan.annual_interest_rate
        )
        # Rounded up for display, so it never looks below an approval threshold it exceeds.
        waiver_share = exact_waiver_share.quantize(Decimal("1e-6"), rounding=ROUND_CEILING)
    option = PlanOption(
        option_id=candidate.option_id,
        terms=terms,
        schedule=schedule,
        total_outstanding=total,
        waiver_share=waiver_share,
        required_authority=authority,
        completion_probability=probability,
        expected_recovery=expected,
        rank=1,
    )
    return option, (-expected, authority.level, len(schedule.instalments), candidate.option_id)


def _usage(amount: Decimal, limit: Decimal) -> Decimal:
    if limit <= 0:
        return Decimal(1) if amount > 0 else Decimal(0)
    return amount / limit
