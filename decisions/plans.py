"""Plan options (DESIGN §3 propose): searched, ranked by expected recovery, with the approval
authority of their whole concession, and the agreement issued exactly as offered.

**Kinds of plan.** A plan is a combination of levers (``schemas.plan.Lever``). The search knows
these kinds, each a structure of phases (``schemas.plan.PlanTerms``):

* ``spread``: the contractual amortisation goes on and the arrears are caught up over the first
  ``N`` instalments (a fixed instalment, then the rest re-amortised over the remaining term);
* ``restructure``: everything owed (arrears capitalised) re-amortised at a level instalment, over
  the remaining term or longer (term extension);
* ``reduced`` / ``interest_only`` / ``holiday``: the same after a relief phase as long as the
  borrower's recovery horizon (temporary hardship): a fixed instalment of what they can afford,
  the interest only, or nothing (interest capitalised);
* ``settlement``: one lump sum, the rest forgiven.

**Search.** For each kind the plan lengths from the remaining term up to the tier's longest
extension are tried (``search.term_points`` of them, always including the shortest that fits
without a concession). At each length the cheapest concession that makes every instalment fit
the affordable instalment of its month is found, using up the concessions the tier allows in
``search.concession_order`` (by default: penalty and fees, then ordinary interest, then the
rate): the largest balance a length can carry is known in closed form, so the waiver needed is
computed, not guessed, and the rate is bisected on ``search.rate_step``. Limits: each lever's,
and ``max_concession_share`` on the combination. Of each kind the length with the highest
expected recovery is kept, once without and once with a concession (only where one is needed);
a plan with a concession is kept only if it recovers more than every plan without one (else the
concession buys nothing). The ``search.max_offered`` best are offered, the rest listed as
excluded with reasons.

**Recovery model** (``ranking``, explained in ``packs/default.toml``): the borrower starts with
probability ``start[tier]`` and breaks the plan in month ``k`` with probability
``hazard[tier] x (1 + stretch x instalment_k / affordable_k)``; expected recovery is the
discounted expected cash, capped at what the loan owes. Ties: lower approval authority, fewer
months, option id.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, localcontext

from decisions.local_days import DEFAULT_ZONE, days_later, local_date
from decisions.policy import Policy, TierPlans
from decisions.schedules import (
    PRECISION,
    PhaseFlow,
    accumulation,
    annuity_factor,
    level_payment,
    monthly_rate,
    phase_flows,
    schedule_of,
)
from schemas.assessment import Affordability, Assessment, HardshipKind, Tier
from schemas.events import LoanOverdue
from schemas.money import Currency, quantize, quantize_down, quantum
from schemas.plan import (
    Agreement,
    AgreementRefused,
    ExcludedOption,
    Lever,
    Phase,
    PhaseKind,
    PlanOption,
    PlanProposal,
    PlanTerms,
)

_SHARE_QUANTUM = Decimal("0.000001")
_NOT_APPLICABLE = frozenset(
    {
        "LEVER_NOT_ALLOWED_FOR_TIER",
        "NO_TEMPORARY_HARDSHIP",
        "RELIEF_NOT_NEEDED",
        "NO_INTEREST_TO_PAY",
    }
)
"""Reasons a kind of plan does not apply at all: not why a borrower got nothing."""
_CIRCUMSTANCES = frozenset({"RECOVERY_LONGER_THAN_RELIEF_LIMIT"})
"""Reasons that explain a failure but are not one: the failure is still named."""
_RELIEF_KINDS: dict[str, tuple[Lever, PhaseKind]] = {
    "reduced": (Lever.REDUCED_PAYMENT, PhaseKind.FIXED),
    "interest_only": (Lever.INTEREST_ONLY, PhaseKind.INTEREST_ONLY),
    "holiday": (Lever.PAYMENT_HOLIDAY, PhaseKind.HOLIDAY),
}


@dataclass(frozen=True)
class _Loan:
    """The numbers of the loan the search works with."""

    currency: Currency
    unit: Decimal
    principal: Decimal
    interest: Decimal
    penalty: Decimal
    fees: Decimal
    arrears: Decimal
    rate: Decimal
    remaining: int
    first_due: date

    @property
    def total(self) -> Decimal:
        return self.principal + self.interest + self.penalty + self.fees

    @classmethod
    def of(cls, loan: LoanOverdue, first_due: date) -> _Loan:
        return cls(
            currency=loan.currency,
            unit=quantum(loan.currency),
            principal=loan.principal_outstanding,
            interest=loan.interest_outstanding,
            penalty=loan.penalty_interest_outstanding,
            fees=loan.fees_outstanding,
            arrears=loan.overdue_amount,
            rate=loan.annual_interest_rate,
            remaining=loan.remaining_term_months,
            first_due=first_due,
        )


@dataclass(frozen=True)
class _Concession:
    waived_penalty: Decimal = Decimal(0)
    waived_fees: Decimal = Decimal(0)
    waived_interest: Decimal = Decimal(0)
    waived_principal: Decimal = Decimal(0)
    rate: Decimal | None = None
    """The reduced rate; None: the contractual rate."""

    @property
    def waived(self) -> Decimal:
        return self.waived_penalty + self.waived_fees + self.waived_interest + self.waived_principal

    def levers(self, contractual_rate: Decimal) -> tuple[Lever, ...]:
        used = []
        if self.waived_penalty or self.waived_fees:
            used.append(Lever.PENALTY_FEE_WAIVER)
        if self.waived_interest:
            used.append(Lever.INTEREST_WAIVER)
        if self.rate is not None and self.rate < contractual_rate:
            used.append(Lever.RATE_REDUCTION)
        return tuple(used)


@dataclass(frozen=True)
class _Scored:
    terms: PlanTerms
    option_id: str
    concession: Decimal
    concession_share: Decimal
    completion: Decimal
    expected: Decimal

    def key(self, policy: Policy) -> tuple[Decimal, int, int, str]:
        authority = policy.approval.authority_for(self.concession_share, self.terms.levers)
        return (-self.expected, authority.level, self.terms.term_months, self.option_id)


@dataclass
class _Kind:
    """One kind of plan: its candidates and, when it has none, why."""

    kind_id: str
    levers: tuple[Lever, ...]
    candidates: list[_Scored] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)


def propose(
    loan: LoanOverdue, assessment: Assessment, policy: Policy, first_due: date
) -> PlanProposal:
    """Search the plans the tier allows (module docstring). Never raises on valid input: no
    option is an empty ``offered`` with ``no_option_reasons`` and every kind's reasons in
    ``excluded``. Raises ``ValueError`` naming the field for inconsistent input (an assessment
    under another policy, or an affordability in another currency than the loan)."""
    if assessment.policy_version != policy.version:
        raise ValueError(
            f"assessment.policy_version: {assessment.policy_version}, the policy is "
            f"{policy.version}"
        )
    affordability = assessment.affordability
    if affordability is not None and affordability.currency != loan.currency:
        raise ValueError(
            f"assessment.affordability.currency: {affordability.currency}, the loan is in "
            f"{loan.currency}"
        )
    facts = _Loan.of(loan, first_due)
    tier_plans = policy.plans.for_tier(assessment.tier)
    kinds = _search(facts, affordability, assessment.tier, tier_plans, policy)

    best: list[_Scored] = []
    for kind in kinds:
        for with_concession in (False, True):
            variant = [c for c in kind.candidates if bool(c.concession) == with_concession]
            if variant:
                best.append(min(variant, key=lambda c: c.key(policy)))
    best.sort(key=lambda c: c.key(policy))
    # A concession must buy something: one that recovers no more than a plan without any
    # concession is money given away (and an approval asked for nothing).
    free = [c.expected for c in best if not c.concession]
    worthless = [c for c in best if c.concession and free and c.expected <= max(free)]
    best = [c for c in best if c not in worthless]
    chosen = best[: policy.search.max_offered]
    offered = tuple(_option(scored, rank, policy) for rank, scored in enumerate(chosen, start=1))
    excluded = [
        ExcludedOption(option_id=kind.kind_id, levers=kind.levers, reasons=tuple(kind.reasons))
        for kind in kinds
        if not kind.candidates
    ]
    excluded += [
        ExcludedOption(
            option_id=scored.option_id,
            levers=scored.terms.levers,
            reasons=("CONCESSION_RECOVERS_NO_MORE",),
        )
        for scored in worthless
    ]
    excluded += [
        ExcludedOption(
            option_id=scored.option_id,
            levers=scored.terms.levers,
            reasons=("RANKED_BELOW_OFFERED",),
        )
        for scored in best[policy.search.max_offered :]
    ]
    no_option: tuple[str, ...] = ()
    if not offered:
        no_option = _no_option_reasons(facts, affordability, tier_plans, excluded)
    return PlanProposal(
        policy_version=policy.version,
        tier=assessment.tier,
        currency=loan.currency,
        offered=offered,
        excluded=tuple(excluded),
        no_option_reasons=no_option,
    )


def issue_agreement(
    *,
    agreement_id: str,
    case_id: str,
    option: PlanOption,
    loan: LoanOverdue,
    policy: Policy,
    issued_at: datetime,
    time_zone: str = DEFAULT_ZONE,
) -> Agreement | AgreementRefused:
    """The agreement for a chosen option, exactly as offered: the same terms and instalment
    amounts, due dates moved so that the first falls ``first_instalment_days`` after issue, and
    open for signature to the end of the ``signature_expiry_days``-th day, both in the
    borrower's calendar (``time_zone``). Refused, with reasons, when the loan is no longer the
    one the option was made for."""
    terms = option.terms
    reasons = []
    if loan.currency != terms.currency:
        reasons.append("CURRENCY_CHANGED")
    else:
        for part, owed, waived, code in (
            ("principal", loan.principal_outstanding, terms.waived_principal, "PRINCIPAL"),
            ("interest", loan.interest_outstanding, terms.waived_interest, "INTEREST"),
            ("penalty", loan.penalty_interest_outstanding, terms.waived_penalty, "PENALTY"),
            ("fees", loan.fees_outstanding, terms.waived_fees, "FEES"),
        ):
            if owed != getattr(terms, part) + waived:
                reasons.append(f"{code}_OUTSTANDING_CHANGED")
        if loan.annual_interest_rate != terms.contractual_rate:
            reasons.append("INTEREST_RATE_CHANGED")
    if reasons:
        return AgreementRefused(
            option_id=option.option_id, reasons=("LOAN_CHANGED_SINCE_OFFER", *reasons)
        )
    first_due = local_date(issued_at, time_zone) + timedelta(
        days=policy.durations.first_instalment_days
    )
    signed = terms.model_copy(update={"first_due": first_due})
    return Agreement(
        agreement_id=agreement_id,
        case_id=case_id,
        policy_version=policy.version,
        option_id=option.option_id,
        terms=signed,
        schedule=schedule_of(signed),
        required_authority=option.required_authority,
        issued_at=issued_at,
        expires_at=days_later(issued_at, policy.durations.signature_expiry_days, time_zone),
        default_after_missed_instalments=policy.durations.default_after_missed_instalments,
    )


# --------------------------------------------------------------------------- search


def _search(
    loan: _Loan,
    affordability: Affordability | None,
    tier: Tier,
    tier_plans: TierPlans,
    policy: Policy,
) -> list[_Kind]:
    kinds = [
        _Kind("spread", (Lever.ARREARS_SPREAD,)),
        _Kind("restructure", (Lever.ARREARS_CAPITALISATION, Lever.TERM_EXTENSION)),
        *(
            _Kind(kind_id, (lever, Lever.ARREARS_CAPITALISATION, Lever.TERM_EXTENSION))
            for kind_id, (lever, _) in _RELIEF_KINDS.items()
        ),
        _Kind("settlement", (Lever.SETTLEMENT,)),
    ]
    for kind in kinds:
        structural = kind.levers[:1] if kind.kind_id != "restructure" else ()
        if structural and not tier_plans.allows(*structural):
            kind.reasons.append("LEVER_NOT_ALLOWED_FOR_TIER")
        elif not tier_plans.levers:
            kind.reasons.append("LEVER_NOT_ALLOWED_FOR_TIER")
        elif loan.total == 0:
            kind.reasons.append("NOTHING_OUTSTANDING")
        elif affordability is None:
            kind.reasons.append("NO_FINANCIAL_INFORMATION")
        elif kind.kind_id == "spread":
            _spread(kind, loan, affordability, tier, tier_plans, policy)
        elif kind.kind_id == "settlement":
            _settlement(kind, loan, affordability, tier, tier_plans, policy)
        else:
            _restructure(kind, loan, affordability, tier, tier_plans, policy)
        if not kind.candidates and set(kind.reasons) <= _CIRCUMSTANCES:
            kind.reasons.append("INSTALMENT_OVER_AFFORDABLE")
    return kinds


def _spread(
    kind: _Kind,
    loan: _Loan,
    affordability: Affordability,
    tier: Tier,
    tier_plans: TierPlans,
    policy: Policy,
) -> None:
    """The contractual amortisation of what is not overdue, plus the arrears in ``N`` parts."""
    if loan.arrears == 0:
        kind.reasons.append("NO_ARREARS")
        return
    longest = min(tier_plans.max_arrears_spread_months, loan.remaining - 1)
    if loan.remaining > policy.search.max_term_months:
        kind.reasons.append("TERM_OVER_POLICY_MAXIMUM")
        return
    if longest < 1:
        kind.reasons.append("REMAINING_TERM_TOO_SHORT_FOR_SPREAD")
        return
    monthly = monthly_rate(loan.rate)
    current = level_payment(loan.total - loan.arrears, monthly, loan.remaining)
    for months in range(1, longest + 1):
        with localcontext() as context:
            context.prec = PRECISION
            catch_up = quantize(current + loan.arrears / months, loan.currency)
        if catch_up <= 0 or catch_up > affordability.limit_for(1):
            continue
        phases = (
            Phase(kind=PhaseKind.FIXED, months=months, payment=catch_up),
            Phase(kind=PhaseKind.LEVEL, months=loan.remaining - months),
        )
        flows = phase_flows(loan.total, loan.rate, phases)
        if flows[0].end_balance <= 0:
            continue  # the catch-up alone repays everything: a restructure says it plainly
        if flows[-1].payment > affordability.limit_for(months + 1) - loan.unit:
            continue
        terms = _terms(loan, (Lever.ARREARS_SPREAD,), phases, _Concession())
        kind.candidates.append(_scored(f"spread_{months}m", terms, affordability, tier, policy))


def _restructure(
    kind: _Kind,
    loan: _Loan,
    affordability: Affordability,
    tier: Tier,
    tier_plans: TierPlans,
    policy: Policy,
) -> None:
    """Everything owed re-amortised, after a relief phase for the relief kinds."""
    relief = _RELIEF_KINDS.get(kind.kind_id)
    relief_months = 0
    if relief is not None:
        recovery = affordability.recovery_months
        if affordability.hardship is not HardshipKind.TEMPORARY or recovery is None:
            kind.reasons.append("NO_TEMPORARY_HARDSHIP")
            return
        relief_months = min(recovery, tier_plans.max_relief_months)
        if relief_months < recovery:
            kind.reasons.append("RECOVERY_LONGER_THAN_RELIEF_LIMIT")
        if relief[1] is PhaseKind.FIXED and affordability.affordable_instalment <= 0:
            kind.reasons.append("NO_AFFORDABLE_INSTALMENT")
            return
        if relief[1] is PhaseKind.INTEREST_ONLY and loan.rate == 0:
            kind.reasons.append("NO_INTEREST_TO_PAY")
            return
    if loan.arrears > 0 and not tier_plans.allows(Lever.ARREARS_CAPITALISATION):
        kind.reasons.append("LEVER_NOT_ALLOWED_FOR_TIER")
        return
    extension = tier_plans.max_extension_months if tier_plans.allows(Lever.TERM_EXTENSION) else 0
    shortest = max(loan.remaining, relief_months + 1, 1)
    longest = min(loan.remaining + extension, policy.search.max_term_months)
    if shortest > longest:
        kind.reasons.append(
            "TERM_OVER_POLICY_MAXIMUM"
            if shortest > policy.search.max_term_months
            else "EXTENSION_OVER_TIER_LIMIT"
        )
        return
    shape = _Shape(loan, affordability, relief, relief_months)

    def fits(months: int) -> bool:
        return loan.total <= shape.max_balance(months, loan.rate)

    # The shortest length that fits without a concession (the carried balance grows with it).
    lengths = range(shortest, longest + 1)
    first_fit = _first(lengths, fits)
    if first_fit is not None:
        for months in _spaced(first_fit, longest, policy.search.term_points):
            candidate = shape.candidate(months, _Concession(), kind, tier, policy)
            if candidate is not None:
                kind.candidates.append(candidate)
    concessions = [lever for lever in policy.search.concession_order if tier_plans.allows(lever)]
    needs_concession_until = (first_fit - 1) if first_fit is not None else longest
    if not concessions or needs_concession_until < shortest:
        return
    over_limit = False
    for months in _spaced(shortest, needs_concession_until, policy.search.term_points):
        concession = _cheapest_concession(shape, months, concessions, tier_plans, policy)
        if concession is None:
            continue
        candidate = shape.candidate(months, concession, kind, tier, policy)
        if candidate is None:
            continue
        if candidate.concession_share > tier_plans.max_concession_share:
            over_limit = True
            continue
        kind.candidates.append(candidate)
    if not kind.candidates and over_limit:
        kind.reasons.append("CONCESSION_OVER_TIER_LIMIT")


@dataclass(frozen=True)
class _Shape:
    """A relief phase (or none) followed by a level phase: what fits, in closed form."""

    loan: _Loan
    affordability: Affordability
    relief: tuple[Lever, PhaseKind] | None
    relief_months: int

    def max_balance(self, months: int, rate: Decimal) -> Decimal:
        """The largest balance whose plan of ``months`` months at ``rate`` fits every month's
        affordable instalment (level instalments one minor unit below it, for rounding)."""
        unit, relief_months = self.loan.unit, self.relief_months
        with localcontext() as context:
            context.prec = PRECISION
            monthly = monthly_rate(rate)
            level_limit = self.affordability.limit_for(relief_months + 1) - unit
            if level_limit <= 0:
                return Decimal(0)
            # What the level phase can carry, valued at its start.
            carried = level_limit * annuity_factor(monthly, months - relief_months)
            if self.relief is None:
                return carried
            growth = (1 + monthly) ** relief_months
            kind = self.relief[1]
            if kind is PhaseKind.FIXED:
                paid = self.affordability.affordable_instalment * accumulation(
                    monthly, relief_months
                )
                return (carried + paid) / growth
            if kind is PhaseKind.INTEREST_ONLY:
                interest_limit = self.affordability.limit_for(1) - unit
                if interest_limit <= 0:
                    return Decimal(0)
                return min(carried, interest_limit / monthly)
            return carried / growth

    def phases(self, months: int) -> tuple[Phase, ...]:
        level = Phase(kind=PhaseKind.LEVEL, months=months - self.relief_months)
        if self.relief is None:
            return (level,)
        kind = self.relief[1]
        payment = self.affordability.affordable_instalment if kind is PhaseKind.FIXED else None
        return (Phase(kind=kind, months=self.relief_months, payment=payment), level)

    def candidate(
        self,
        months: int,
        concession: _Concession,
        kind: _Kind,
        tier: Tier,
        policy: Policy,
    ) -> _Scored | None:
        loan = self.loan
        phases = self.phases(months)
        rate = concession.rate if concession.rate is not None else loan.rate
        flows = phase_flows(loan.total - concession.waived, rate, phases)
        if self.relief is not None:
            relief_flow, level_flow = flows
            if relief_flow.end_balance <= 0 or (
                self.relief[1] is PhaseKind.FIXED
                and level_flow.payment <= self.affordability.affordable_instalment
            ):
                # The relief instalment repays it all, or more than comes after it: the plan
                # needs no relief phase (the restructure kind offers it without).
                if "RELIEF_NOT_NEEDED" not in kind.reasons:
                    kind.reasons.append("RELIEF_NOT_NEEDED")
                return None
        levers: list[Lever] = []
        if self.relief is not None:
            levers.append(self.relief[0])
        if loan.arrears > 0:
            levers.append(Lever.ARREARS_CAPITALISATION)
        if months > loan.remaining:
            levers.append(Lever.TERM_EXTENSION)
        levers.extend(concession.levers(loan.rate))
        if not levers:
            return None  # the contract as it stands: nothing to offer
        terms = _terms(loan, tuple(levers), phases, concession)
        name = "extension" if months > loan.remaining else "restructure"
        if self.relief is not None:
            name = f"{kind.kind_id}_{self.relief_months}m_term"
        suffix = "".join(
            {
                Lever.PENALTY_FEE_WAIVER: "_waiver",
                Lever.INTEREST_WAIVER: "_interest_waiver",
                Lever.RATE_REDUCTION: "_rate_cut",
            }[lever]
            for lever in concession.levers(loan.rate)
        )
        option_id = f"{name}_{months}m{suffix}"
        return _scored(option_id, terms, self.affordability, tier, policy)


def _cheapest_concession(
    shape: _Shape,
    months: int,
    order: list[Lever],
    tier_plans: TierPlans,
    policy: Policy,
) -> _Concession | None:
    """The concessions, used up in ``order``, that make a plan of ``months`` fit; None if even
    all of them do not."""
    loan = shape.loan
    unit = loan.unit
    waived = {"penalty": Decimal(0), "fees": Decimal(0), "interest": Decimal(0)}
    rate = loan.rate

    def need(at_rate: Decimal) -> Decimal:
        """How much more must be waived at this rate (rounded up to the minor unit)."""
        excess = loan.total - sum(waived.values()) - shape.max_balance(months, at_rate)
        return max(excess.quantize(unit, rounding=ROUND_CEILING), Decimal(0))

    for lever in order:
        missing = need(rate)
        if missing == 0:
            break
        if lever is Lever.PENALTY_FEE_WAIVER:
            cap = quantize_down(
                (loan.penalty + loan.fees) * tier_plans.max_penalty_fee_waiver_share, loan.currency
            )
            used = min(missing, cap)
            waived["penalty"] = min(used, loan.penalty)
            waived["fees"] = used - waived["penalty"]
        elif lever is Lever.INTEREST_WAIVER:
            cap = quantize_down(loan.interest * tier_plans.max_interest_waiver_share, loan.currency)
            waived["interest"] = min(missing, cap)
        elif lever is Lever.RATE_REDUCTION and loan.rate > 0:
            rate = _highest_fitting_rate(loan.rate, tier_plans, policy, lambda r: need(r) == 0)
    if need(rate) > 0 or loan.total - sum(waived.values()) <= 0:
        return None
    return _Concession(
        waived_penalty=waived["penalty"],
        waived_fees=waived["fees"],
        waived_interest=waived["interest"],
        rate=rate if rate < loan.rate else None,
    )


def _highest_fitting_rate(
    contractual: Decimal,
    tier_plans: TierPlans,
    policy: Policy,
    fits: Callable[[Decimal], bool],
) -> Decimal:
    """The contractual rate less the fewest ``rate_step``s that fits, within the tier's cut;
    the lowest allowed rate if none does."""
    step = policy.search.rate_step
    lowest = contractual * (1 - tier_plans.max_rate_reduction_share)
    steps = int(((contractual - lowest) / step).to_integral_value(rounding=ROUND_FLOOR))
    if steps <= 0:
        return contractual
    found = _first(range(1, steps + 1), lambda k: fits(contractual - k * step))
    return contractual - (found if found is not None else steps) * step


def _settlement(
    kind: _Kind,
    loan: _Loan,
    affordability: Affordability,
    tier: Tier,
    tier_plans: TierPlans,
    policy: Policy,
) -> None:
    """Ask for as much as the borrower has, at least the policy minimum, at most everything."""
    available = affordability.lump_sum_available
    if available is None or available == 0:
        kind.reasons.append("NO_LUMP_SUM_DECLARED")
        return
    minimum = (loan.total * tier_plans.min_settlement_share).quantize(
        loan.unit, rounding=ROUND_CEILING
    )
    if available < minimum:
        kind.reasons.append("LUMP_SUM_BELOW_MINIMUM_SETTLEMENT")
        return
    amount = min(available, loan.total)
    if loan.total - amount > tier_plans.max_concession_share * loan.total:
        kind.reasons.append("CONCESSION_OVER_TIER_LIMIT")
        return
    # Forgive fees first, then penalty, then interest, then principal.
    forgiven = loan.total - amount
    parts = {}
    for part in ("fees", "penalty", "interest", "principal"):
        parts[part] = min(forgiven, getattr(loan, part))
        forgiven -= parts[part]
    concession = _Concession(
        waived_penalty=parts["penalty"],
        waived_fees=parts["fees"],
        waived_interest=parts["interest"],
        waived_principal=parts["principal"],
        rate=Decimal(0),
    )
    phases = (Phase(kind=PhaseKind.LEVEL, months=1),)
    terms = _terms(loan, (Lever.SETTLEMENT,), phases, concession)
    kind.candidates.append(_scored("settlement", terms, affordability, tier, policy))


# --------------------------------------------------------------------------- scoring


def _terms(
    loan: _Loan, levers: tuple[Lever, ...], phases: tuple[Phase, ...], concession: _Concession
) -> PlanTerms:
    return PlanTerms(
        levers=levers,
        currency=loan.currency,
        first_due=loan.first_due,
        annual_interest_rate=concession.rate if concession.rate is not None else loan.rate,
        contractual_rate=loan.rate,
        remaining_term_months=loan.remaining,
        principal=loan.principal - concession.waived_principal,
        interest=loan.interest - concession.waived_interest,
        penalty=loan.penalty - concession.waived_penalty,
        fees=loan.fees - concession.waived_fees,
        waived_principal=concession.waived_principal,
        waived_interest=concession.waived_interest,
        waived_penalty=concession.waived_penalty,
        waived_fees=concession.waived_fees,
        phases=phases,
    )


@dataclass(frozen=True)
class Recovery:
    """What an option is worth to the lender, and what it gives up."""

    completion_probability: Decimal
    expected_recovery: Decimal
    concession: Decimal
    """Waivers plus the interest a rate below the contractual one forgoes over the plan."""
    concession_share: Decimal
    """``concession / total outstanding``, rounded up to six places, at most 1."""


def recovery(
    terms: PlanTerms, affordability: Affordability, tier: Tier, policy: Policy
) -> Recovery:
    """The recovery model of the module docstring (and of the default policy file), computed
    from the terms' exact phase payments in closed form."""
    settlement = terms.is_settlement
    total = terms.total_outstanding
    unit = quantum(terms.currency)
    flows = phase_flows(terms.balance, terms.annual_interest_rate, terms.phases)
    with localcontext() as context:
        context.prec = PRECISION
        forgone = Decimal(0)
        if not settlement and terms.annual_interest_rate < terms.contractual_rate:
            cut = monthly_rate(terms.contractual_rate) - monthly_rate(terms.annual_interest_rate)
            forgone = cut * sum((f.balance_months for f in flows), Decimal(0))
        concession = (terms.waived + forgone).quantize(unit, rounding=ROUND_CEILING)
        share = min(concession / total, Decimal(1)).quantize(_SHARE_QUANTUM, ROUND_CEILING)

        ranking = policy.ranking
        hazard = ranking.monthly_hazard.of(tier)
        discount = 1 / (1 + ranking.discount_rate / 12)
        alive = ranking.start.of(tier)
        cash = Decimal(0)
        for payment, months, limit, first_month in _segments(flows, affordability, settlement):
            use = Decimal(1) if limit <= 0 else min(payment / limit, Decimal(1))
            if payment == 0:
                use = Decimal(0)
            keep = max(1 - hazard * (1 + ranking.stretch * use), Decimal(0))
            factor = keep * discount
            # sum over j = 1..n of factor^j, discounted to the plan's start
            if factor == 1:
                series = Decimal(months)
            else:
                series = factor * (1 - factor**months) / (1 - factor)
            cash += alive * payment * series * discount ** (first_month - 1)
            alive *= keep**months
        expected = quantize_down(min(cash, total), terms.currency)
        completion = alive.quantize(_SHARE_QUANTUM)
    return Recovery(completion, expected, concession, share)


def _scored(
    option_id: str, terms: PlanTerms, affordability: Affordability, tier: Tier, policy: Policy
) -> _Scored:
    worth = recovery(terms, affordability, tier, policy)
    return _Scored(
        terms,
        option_id,
        worth.concession,
        worth.concession_share,
        worth.completion_probability,
        worth.expected_recovery,
    )


def _segments(
    flows: tuple[PhaseFlow, ...], affordability: Affordability, settlement: bool
) -> Iterable[tuple[Decimal, int, Decimal, int]]:
    """(exact payment, months, affordable instalment, first month) with all three constant:
    the phases, cut where the affordable instalment changes (the end of the hardship)."""
    if settlement:
        available = affordability.lump_sum_available or Decimal(0)
        yield flows[0].payment, 1, available, 1
        return
    change = (affordability.recovery_months or 0) + 1
    for flow in flows:
        if flow.first_month < change <= flow.last_month:
            before = change - flow.first_month
            yield flow.payment, before, affordability.limit_for(flow.first_month), flow.first_month
            yield flow.payment, flow.months - before, affordability.limit_for(change), change
        else:
            yield (
                flow.payment,
                flow.months,
                affordability.limit_for(flow.first_month),
                (flow.first_month),
            )


def _option(scored: _Scored, rank: int, policy: Policy) -> PlanOption:
    terms = scored.terms
    schedule = schedule_of(terms)
    amounts = [i.amount for i in schedule.instalments]
    with localcontext() as context:
        context.prec = PRECISION
        waiver_share = (terms.waived / terms.total_outstanding).quantize(
            _SHARE_QUANTUM, ROUND_CEILING
        )
    return PlanOption(
        option_id=scored.option_id,
        terms=terms,
        instalment_count=len(amounts),
        first_instalment=amounts[0],
        max_instalment=max(amounts),
        total_payable=schedule.total_payable,
        concession=scored.concession,
        concession_share=scored.concession_share,
        waiver_share=min(waiver_share, Decimal(1)),
        required_authority=policy.approval.authority_for(scored.concession_share, terms.levers),
        completion_probability=scored.completion,
        expected_recovery=scored.expected,
        rank=rank,
    )


def _no_option_reasons(
    loan: _Loan,
    affordability: Affordability | None,
    tier_plans: TierPlans,
    excluded: list[ExcludedOption],
) -> tuple[str, ...]:
    if not tier_plans.levers:
        return ("NO_PLAN_ALLOWED_FOR_TIER",)
    if loan.total == 0:
        return ("NOTHING_OUTSTANDING",)
    if affordability is None:
        return ("NO_FINANCIAL_INFORMATION",)
    counts = Counter(
        reason for option in excluded for reason in option.reasons if reason not in _NOT_APPLICABLE
    )
    ordered = sorted(counts, key=lambda reason: (-counts[reason], reason))
    return tuple(ordered) or ("NO_PLAN_ALLOWED_FOR_TIER",)


# --------------------------------------------------------------------------- helpers


def _first(values: range, predicate: Callable[[int], bool]) -> int | None:
    """The first value of a range for which a monotone predicate holds (bisection)."""
    low, high = 0, len(values)
    while low < high:
        middle = (low + high) // 2
        if predicate(values[middle]):
            high = middle
        else:
            low = middle + 1
    return values[low] if low < len(values) else None


def _spaced(first: int, last: int, points: int) -> list[int]:
    """Up to ``points`` whole numbers from ``first`` to ``last``, both included, evenly spaced."""
    if last <= first:
        return [first]
    count = min(points, last - first + 1)
    return sorted({first + math.floor((last - first) * i / (count - 1)) for i in range(count)})
