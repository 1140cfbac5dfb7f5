"""A synthetic loan book: overdue events and what each borrower would declare. Pure; seeded."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from decisions.schedules import level_payment, monthly_rate
from schemas.assessment import FinancialProfile
from schemas.events import HardshipReason, LoanOverdue, ProductType
from schemas.money import Currency, quantize
from simulate.profiles import Profile, assign_profiles


@dataclass(frozen=True)
class ProductShape:
    """Ranges of a product's loans, in whole currency units and months."""

    principal_range: tuple[int, int]
    rates: tuple[str, ...]
    remaining_months_range: tuple[int, int]
    weight: int


PRODUCT_SHAPES: dict[ProductType, ProductShape] = {
    ProductType.CREDIT_CARD: ProductShape((5_000, 50_000), ("0.1800", "0.1460"), (6, 24), 30),
    ProductType.PERSONAL_LOAN: ProductShape(
        (20_000, 200_000), ("0.0600", "0.0890", "0.1200"), (12, 48), 35
    ),
    ProductType.AUTO_LOAN: ProductShape((50_000, 300_000), ("0.0450", "0.0550"), (12, 60), 15),
    ProductType.MORTGAGE: ProductShape((300_000, 2_000_000), ("0.0350", "0.0420"), (120, 300), 10),
    ProductType.SME_LOAN: ProductShape((100_000, 1_000_000), ("0.0700", "0.0850"), (12, 60), 10),
}

DAYS_PAST_DUE: dict[Profile, tuple[int, int]] = {
    Profile.COOPERATIVE: (5, 45),
    Profile.TEMPORARY_HARDSHIP: (20, 75),
    Profile.LASTING_HARDSHIP: (45, 150),
    Profile.WILFUL: (60, 150),
    Profile.UNRESPONSIVE: (10, 120),
    Profile.PAYS_LATE: (5, 55),
    Profile.DISPUTES: (10, 90),
}

# The borrower's affordable instalment (policy share of disposable income) as a multiple of
# the contractual instalment: what makes the decision core tier them as intended and offer the
# profile the plans it is meant to take. Borrowers who agree and pay without a hardship
# (cooperative, pays late) can afford a little more than the contractual instalment, enough for
# a re-amortisation with the arrears capitalised (a long mortgage barely gains from a longer
# term). Temporary hardship affords less now and the contractual instalment again after
# recovery (a relief phase, then a longer term); lasting hardship mostly cannot carry the debt
# and is meant to go to settlement or collections. ``bench.coverage`` measures who gets nothing.
AFFORDABILITY_FACTOR: dict[Profile, tuple[str, str]] = {
    Profile.COOPERATIVE: ("1.05", "1.50"),
    Profile.TEMPORARY_HARDSHIP: ("0.55", "0.95"),
    Profile.LASTING_HARDSHIP: ("0.15", "0.55"),
    Profile.WILFUL: ("1.60", "3.00"),
    Profile.PAYS_LATE: ("1.05", "1.40"),
    Profile.DISPUTES: ("0.60", "1.20"),
}
# None: fell behind without a hardship to declare (a lasting one would rule out the light tier).
HARDSHIP_REASONS: dict[Profile, tuple[HardshipReason | None, ...]] = {
    Profile.COOPERATIVE: (None,),
    Profile.TEMPORARY_HARDSHIP: (HardshipReason.JOB_LOSS, HardshipReason.ILLNESS),
    Profile.LASTING_HARDSHIP: (HardshipReason.ILLNESS, HardshipReason.BUSINESS_DOWNTURN),
    Profile.WILFUL: (None,),
    Profile.PAYS_LATE: (None, HardshipReason.INCOME_REDUCTION),
    Profile.DISPUTES: (None,),
}
AFFORDABLE_SHARE = Decimal("0.5")
"""The default policy's share of disposable income: declared finances are built against it."""


@dataclass(frozen=True)
class SimulatedLoan:
    overdue: LoanOverdue
    profile: Profile
    finances: FinancialProfile | None
    """What the borrower declares when asked; None: never answers."""
    behaviour_seed: int
    """Seeds this borrower's own choices, so one borrower's luck does not shift another's."""

    @property
    def case_id(self) -> str:
        return self.overdue.case_id


def _decimal_between(rng: random.Random, low: str, high: str) -> Decimal:
    low_value, high_value = Decimal(low), Decimal(high)
    steps = rng.randint(0, 1000)
    return low_value + (high_value - low_value) * steps / 1000


def generate_portfolio(
    count: int,
    *,
    seed: int,
    mix: dict[Profile, int],
    as_of: datetime,
    loan_prefix: str = "SIM",
    currency: Currency = "CNY",
    products: Sequence[ProductType] | None = None,
    portfolio: str | None = None,
) -> list[SimulatedLoan]:
    """``count`` overdue loans as of ``as_of``; the same arguments give the same portfolio.
    ``portfolio`` tags every loan (it picks the policy its cases run under)."""
    if count < 0:
        raise ValueError("count: must be >= 0")
    if as_of.tzinfo is None:
        raise ValueError("as_of: must be timezone-aware")
    rng = random.Random(seed)
    chosen = list(products) if products else list(PRODUCT_SHAPES)
    weights = [PRODUCT_SHAPES[p].weight for p in chosen]
    profiles = assign_profiles(count, mix, rng)
    loans = []
    for index, profile in enumerate(profiles):
        product = rng.choices(chosen, weights)[0]
        loan = _loan(rng, index, profile, product, as_of, f"{loan_prefix}-{index:06d}", currency)
        if portfolio is not None:
            tagged = loan.overdue.model_copy(update={"portfolio": portfolio})
            loan = SimulatedLoan(tagged, loan.profile, loan.finances, loan.behaviour_seed)
        loans.append(loan)
    return loans


def _loan(
    rng: random.Random,
    index: int,
    profile: Profile,
    product: ProductType,
    as_of: datetime,
    loan_id: str,
    currency: Currency,
) -> SimulatedLoan:
    shape = PRODUCT_SHAPES[product]
    principal = quantize(Decimal(rng.randint(*shape.principal_range)), currency)
    rate = Decimal(rng.choice(shape.rates))
    remaining = rng.randint(*shape.remaining_months_range)
    instalment = quantize(level_payment(principal, monthly_rate(rate), remaining), currency)
    days_past_due = rng.randint(*DAYS_PAST_DUE[profile])
    months_overdue = -(-days_past_due // 30)
    interest = quantize(principal * rate / 12 * months_overdue, currency)
    penalty = quantize(instalment * months_overdue * Decimal("0.0005") * days_past_due, currency)
    fees = quantize(Decimal(rng.choice((0, 50, 100, 200))), currency)
    total = principal + interest + penalty + fees
    overdue_amount = min(instalment * months_overdue + penalty + fees, total)
    overdue = LoanOverdue(
        event_id=f"{loan_id}-overdue-1",
        occurred_at=as_of,
        schema_version=1,
        loan_id=loan_id,
        borrower_id=f"BRW-{loan_id}",
        product=product,
        currency=currency,
        principal_outstanding=principal,
        interest_outstanding=interest,
        penalty_interest_outstanding=penalty,
        fees_outstanding=fees,
        overdue_amount=overdue_amount,
        days_past_due=days_past_due,
        delinquent_since=(as_of - timedelta(days=days_past_due)).date(),
        contractual_instalment=instalment,
        remaining_term_months=remaining,
        annual_interest_rate=rate,
    )
    return SimulatedLoan(
        overdue=overdue,
        profile=profile,
        finances=_finances(rng, profile, instalment, total, currency),
        behaviour_seed=rng.getrandbits(32) ^ index,
    )


def _finances(
    rng: random.Random,
    profile: Profile,
    instalment: Decimal,
    total_outstanding: Decimal,
    currency: Currency,
) -> FinancialProfile | None:
    if profile is Profile.UNRESPONSIVE:
        return None
    factor = _decimal_between(rng, *AFFORDABILITY_FACTOR[profile])
    affordable = instalment * factor
    essentials = quantize(instalment * _decimal_between(rng, "1.5", "3.0") + 2000, currency)
    other_debt = quantize(instalment * _decimal_between(rng, "0", "0.3"), currency)
    income = quantize(essentials + other_debt + affordable / AFFORDABLE_SHARE, currency)
    temporary = profile is Profile.TEMPORARY_HARDSHIP
    lump_sum = (
        quantize(total_outstanding * _decimal_between(rng, "0.6", "0.9"), currency)
        if profile is Profile.LASTING_HARDSHIP and rng.random() < 0.3
        else None
    )
    return FinancialProfile(
        currency=currency,
        monthly_income=income,
        essential_expenses=essentials,
        other_debt_payments=other_debt,
        household_size=rng.randint(1, 5),
        hardship_reason=rng.choice(HARDSHIP_REASONS[profile]),
        temporary=temporary,
        expected_recovery_months=rng.randint(3, 6) if temporary else None,
        lump_sum_available=lump_sum,
    )
