"""Schedules: every instalment within one minor unit of an independently computed exact plan.

The reference here is rational arithmetic (``fractions.Fraction``, month by month), not the
``Decimal`` closed forms of ``decisions.schedules``: the level payment of a phase is the true
annuity ``E m / (1 - (1 + m)^-n)`` of the exact balance at the phase's start.
"""

from __future__ import annotations

from datetime import date
from decimal import ROUND_FLOOR, Decimal
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from decisions.schedules import add_months, phase_flows, schedule_of
from schemas.money import MINOR_UNITS, quantum
from schemas.plan import Lever, Phase, PhaseKind, PlanTerms

pytestmark = pytest.mark.unit


def exact_plan(terms: PlanTerms) -> tuple[list[Fraction], Fraction]:
    """Exact payment of every month, and the exact interest capitalised."""
    monthly = Fraction(terms.annual_interest_rate) / 12
    balance = Fraction(terms.balance)
    payments: list[Fraction] = []
    capitalised = Fraction(0)
    for phase in terms.phases:
        n = phase.months
        if phase.kind is PhaseKind.LEVEL:
            level = balance / n if monthly == 0 else balance * monthly / (1 - (1 + monthly) ** -n)
        interest_only = balance * monthly
        for index in range(n):
            interest = balance * monthly
            if phase.kind is PhaseKind.LEVEL:
                payment = balance + interest if index == n - 1 else level
            elif phase.kind is PhaseKind.FIXED:
                payment = min(Fraction(phase.payment), balance + interest)
            elif phase.kind is PhaseKind.INTEREST_ONLY:
                payment = interest_only
            else:
                payment = Fraction(0)
            capitalised += max(interest - payment, Fraction(0))
            balance += interest - payment
            payments.append(payment)
    assert balance == 0
    return payments, capitalised


def months_between(first: date, later: date) -> int:
    return (later.year - first.year) * 12 + later.month - first.month


def check(terms: PlanTerms) -> None:
    schedule = schedule_of(terms)
    unit = Fraction(quantum(terms.currency))
    payments, capitalised = exact_plan(terms)
    by_month = {months_between(terms.first_due, i.due_date): i for i in schedule.instalments}
    assert len(by_month) == len(schedule.instalments)
    for month, exact in enumerate(payments):
        instalment = by_month.get(month)
        if instalment is None:
            assert exact < unit  # only a holiday or a tail below one minor unit has no instalment
            continue
        assert instalment.due_date == add_months(terms.first_due, month)
        assert abs(Fraction(instalment.amount) - exact) <= unit, (month, instalment, exact)
        assert instalment.amount > 0 and instalment.principal >= 0 and instalment.interest >= 0
    # Sums exact: principal = balance + capitalised interest; amounts = the rounded total.
    assert schedule.total_principal == schedule.balance + schedule.capitalised_interest
    assert schedule.balance == terms.balance
    assert abs(Fraction(schedule.capitalised_interest) - capitalised) <= unit
    assert abs(Fraction(schedule.total_payable) - sum(payments)) <= unit / 2
    assert [i.number for i in schedule.instalments] == list(range(1, len(schedule.instalments) + 1))
    # Pure: the same terms give the same schedule, also after a JSON round trip.
    assert schedule_of(PlanTerms.model_validate_json(terms.model_dump_json())) == schedule
    # The closed forms the search uses agree with the reference (for plans that do not repay
    # everything before their level phase: the search never makes one).
    flows = phase_flows(terms.balance, terms.annual_interest_rate, terms.phases)
    if all(flow.end_balance > 0 for flow in flows[:-1]):
        for flow in flows:
            exact = payments[flow.first_month - 1]
            assert abs(Fraction(flow.payment) - exact) <= max(exact, unit) / 10**30


def terms_of(
    currency: str,
    balance: Decimal,
    rate: Decimal,
    phases: tuple[Phase, ...],
    levers: tuple[Lever, ...] = (Lever.TERM_EXTENSION,),
) -> PlanTerms:
    return PlanTerms(
        levers=levers,
        currency=currency,
        first_due=date(2026, 1, 31),
        annual_interest_rate=rate,
        contractual_rate=rate,
        remaining_term_months=12,
        principal=balance,
        interest=Decimal(0),
        penalty=Decimal(0),
        fees=Decimal(0),
        phases=phases,
    )


# --- the audit's cases ------------------------------------------------------------------------


@pytest.mark.parametrize("principal", ["5000.00", "10000.00"])
def test_long_high_rate_annuity_has_no_balloon_and_no_zero_instalments(principal: str):
    # Rounding the level payment once made 359 x 150.00 then 5,150.00 (and for 10,000.00,
    # eight instalments of 0.00): the drift compounded at 3 % a month.
    terms = terms_of("USD", Decimal(principal), Decimal("0.36"), (Phase(kind="level", months=360),))
    schedule = schedule_of(terms)
    level = Decimal(principal) * Decimal("0.03") / (1 - Decimal("1.03") ** -360)
    assert len(schedule.instalments) == 360
    assert all(abs(i.amount - level) <= Decimal("0.01") for i in schedule.instalments)
    check(terms)


def test_tiny_balance_is_paid_in_whole_minor_units():
    terms = terms_of("CNY", Decimal("0.04"), Decimal("0.12"), (Phase(kind="level", months=6),))
    schedule = schedule_of(terms)
    assert [i.amount for i in schedule.instalments] == [Decimal("0.01")] * 4
    assert [add_months(terms.first_due, 0)] == [schedule.instalments[0].due_date]
    check(terms)


def test_holiday_then_interest_only_then_level_capitalises_the_holiday_interest():
    terms = terms_of(
        "CNY",
        Decimal("100000.00"),
        Decimal("0.12"),
        (
            Phase(kind="holiday", months=3),
            Phase(kind="interest_only", months=3),
            Phase(kind="level", months=12),
        ),
    )
    schedule = schedule_of(terms)
    # 1 % a month for three months: 100,000.00 -> 103,030.10; then 1,030.30 a month interest.
    assert schedule.capitalised_interest == Decimal("3030.10")
    first = schedule.instalments[0]
    assert (first.due_date, first.amount, first.principal) == (
        date(2026, 4, 30),
        Decimal("1030.30"),
        Decimal("0.00"),
    )
    check(terms)


def test_largest_amounts_longest_term_zero_decimal_currency():
    terms = terms_of(
        "JPY", Decimal("1000000000000000"), Decimal("1"), (Phase(kind="level", months=480),)
    )
    assert len(schedule_of(terms).instalments) == 480
    check(terms)


# --- properties --------------------------------------------------------------------------------


@st.composite
def plan_terms(draw: st.DrawFn) -> PlanTerms:
    currency = draw(st.sampled_from(["CNY", "JPY", "USD"]))
    places = MINOR_UNITS[currency]
    unit = quantum(currency)
    magnitude = draw(st.integers(0, 15))
    balance = (
        Decimal(draw(st.integers(1, 10 ** (magnitude + places)))) * unit
        if magnitude < 15
        else Decimal(draw(st.integers(1, 10**15))).quantize(unit)
    )
    rate = draw(st.decimals(Decimal(0), Decimal(1), places=4))
    # Up to three relief phases of any kind in any order, then the level phase: every plan
    # shape the search makes (spread, reduced, interest-only, holiday) and more.
    phases: list[Phase] = []
    months_left = 480
    for kind in draw(st.lists(st.sampled_from(["holiday", "interest_only", "fixed"]), max_size=3)):
        months = draw(st.integers(1, 24))
        months_left -= months
        if kind == "fixed":
            # Any payment, even one that repays everything early (no instalments after it).
            payment = Decimal(draw(st.integers(1, max(1, int(balance / unit))))) * unit
            phases.append(Phase(kind="fixed", months=months, payment=payment))
        else:
            phases.append(Phase(kind=kind, months=months))
    phases.append(Phase(kind="level", months=draw(st.integers(1, months_left))))
    # The balance split over the parts a plan owes, some of it waived, the rate maybe cut.
    parts = draw(st.lists(st.integers(0, 3), min_size=4, max_size=4))
    total_parts = sum(parts) or 1
    shares = [(balance * p / total_parts).quantize(unit, rounding=ROUND_FLOOR) for p in parts]
    shares[0] += balance - sum(shares)
    waived = Decimal(draw(st.integers(0, 10**6))) * unit
    levers = draw(st.lists(st.sampled_from(list(Lever)), min_size=1, max_size=5, unique=True))
    return PlanTerms(
        levers=tuple(levers),
        currency=currency,
        first_due=draw(st.dates(date(2026, 1, 1), date(2030, 12, 31))),
        annual_interest_rate=rate,
        contractual_rate=max(rate, draw(st.decimals(Decimal(0), Decimal(1), places=4))),
        remaining_term_months=draw(st.integers(0, 480)),
        principal=shares[0],
        interest=shares[1],
        penalty=shares[2],
        fees=shares[3],
        waived_penalty=waived,
        phases=tuple(phases),
    )


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(terms=plan_terms())
def test_every_instalment_is_within_one_minor_unit_of_the_exact_plan(terms: PlanTerms):
    check(terms)
