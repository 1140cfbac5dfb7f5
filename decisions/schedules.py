"""Repayment schedules from plan terms, exact to the minor unit.

A plan is first worked out without rounding (``Decimal`` with 50 significant digits): month
``k`` accrues interest ``I_k = E_(k-1) x rate / 12`` on the balance ``E``, its exact payment
``X_k`` is the fixed payment of its phase, the month's interest (interest-only), nothing
(holiday) or the level annuity of the balance at the start of the level phase, and
``E_k = E_(k-1) + I_k - X_k`` ends at exactly zero.

Only then is it rounded, and cumulatively: the amount due in month ``k`` is
``round(X_1 + ... + X_k) - round(X_1 + ... + X_(k-1))``. So a rounding error never compounds
at the loan rate (the flaw of rounding the level payment once and letting the last instalment
absorb the drift): every amount is within one minor unit of its exact payment, a fixed payment
is paid exactly, and the amounts add up to the rounded total of the exact payments. A month
whose amount rounds to zero has no instalment (a holiday; a tail below one minor unit is
carried into the next month).

Principal and interest are split the same way: the principal parts follow the rounded running
total of the exact principal repaid (a payment covers the month's interest first; interest it
does not cover is capitalised), so they add up exactly to the balance plus the capitalised
interest. Only the last instalment's split may take the leftover of that rounding.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, localcontext

from schemas.money import quantize
from schemas.plan import Instalment, Phase, PhaseKind, PlanTerms, RepaymentSchedule

PRECISION = 50
"""Significant digits of the unrounded plan: amounts below 10^20 over 600 months lose nothing
at the minor unit."""


def add_months(anchor: date, months: int) -> date:
    """The same day of month ``months`` later, clamped to the month's last day."""
    month_index = anchor.month - 1 + months
    year, month = anchor.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(anchor.day, calendar.monthrange(year, month)[1]))


def monthly_rate(annual_rate: Decimal) -> Decimal:
    with localcontext() as context:
        context.prec = PRECISION
        return annual_rate / 12


def level_payment(balance: Decimal, monthly: Decimal, months: int) -> Decimal:
    """The annuity payment that repays ``balance`` in ``months`` equal payments (unrounded)."""
    with localcontext() as context:
        context.prec = PRECISION
        if monthly == 0:
            return balance / months
        return balance * monthly / (1 - (1 + monthly) ** -months)


def annuity_factor(monthly: Decimal, months: int) -> Decimal:
    """Present value of 1 a month for ``months`` months: ``level_payment`` = balance / this."""
    with localcontext() as context:
        context.prec = PRECISION
        if months <= 0:
            return Decimal(0)
        if monthly == 0:
            return Decimal(months)
        return (1 - (1 + monthly) ** -months) / monthly


def accumulation(monthly: Decimal, months: int) -> Decimal:
    """``(1 + m)^n - 1) / m``: what paying 1 a month for ``months`` months takes off a balance
    that grows at ``monthly``, valued at the end."""
    with localcontext() as context:
        context.prec = PRECISION
        if monthly == 0:
            return Decimal(months)
        return ((1 + monthly) ** months - 1) / monthly


@dataclass(frozen=True)
class PhaseFlow:
    """One phase of a plan, unrounded."""

    kind: PhaseKind
    first_month: int
    months: int
    payment: Decimal
    """Exact payment of each month of the phase (0 in a holiday)."""
    start_balance: Decimal
    end_balance: Decimal
    balance_months: Decimal
    """Sum of the balance at the start of each month: interest at ``m`` a month is ``m`` x it."""

    @property
    def last_month(self) -> int:
        return self.first_month + self.months - 1


def phase_flows(
    balance: Decimal, annual_rate: Decimal, phases: tuple[Phase, ...]
) -> tuple[PhaseFlow, ...]:
    """Each phase's exact payment and balances, in closed form (no month-by-month loop).

    With ``g = 1 + m``, a constant payment ``X`` for ``n`` months takes a balance ``E`` to
    ``E g^n - X ((g^n - 1) / m)``; the level payment is the one that takes it to zero.
    """
    flows = []
    with localcontext() as context:
        context.prec = PRECISION
        monthly = monthly_rate(annual_rate)
        start, first = balance, 1
        for phase in phases:
            n = phase.months
            if phase.kind is PhaseKind.HOLIDAY:
                payment = Decimal(0)
            elif phase.kind is PhaseKind.INTEREST_ONLY:
                payment = start * monthly
            elif phase.kind is PhaseKind.FIXED:
                assert phase.payment is not None  # the model requires it
                payment = phase.payment
            else:
                payment = level_payment(start, monthly, n)
            if phase.kind is PhaseKind.LEVEL:
                end = Decimal(0)
            else:
                end = start * (1 + monthly) ** n - payment * accumulation(monthly, n)
            if monthly == 0:
                balance_months = n * start - payment * n * (n - 1) / 2
            else:
                balance_months = (start - payment / monthly) * accumulation(monthly, n) + (
                    n * payment / monthly
                )
            flows.append(PhaseFlow(phase.kind, first, n, payment, start, end, balance_months))
            start, first = end, first + n
    return tuple(flows)


def schedule_of(terms: PlanTerms) -> RepaymentSchedule:
    """The exact schedule of ``terms``; pure and deterministic (see the module docstring)."""
    currency = terms.currency
    balance = terms.balance
    # (month, amount, rounded running principal) of every month with something due
    rows: list[tuple[int, Decimal, Decimal]] = []
    with localcontext() as context:
        context.prec = PRECISION
        monthly = monthly_rate(terms.annual_interest_rate)
        remaining = balance
        paid = principal_repaid = Decimal(0)
        paid_rounded = Decimal(0)
        month = 0
        for phase in terms.phases:
            level = (
                level_payment(remaining, monthly, phase.months)
                if phase.kind is PhaseKind.LEVEL
                else None
            )
            interest_only = remaining * monthly
            for index in range(phase.months):
                month += 1
                interest = remaining * monthly
                if level is not None:
                    last = index == phase.months - 1
                    payment = remaining + interest if last else level
                elif phase.kind is PhaseKind.FIXED:
                    assert phase.payment is not None
                    payment = phase.payment
                elif phase.kind is PhaseKind.INTEREST_ONLY:
                    payment = interest_only
                else:
                    payment = Decimal(0)
                # Never more than clears the balance (terms from the search never ask it).
                payment = max(min(payment, remaining + interest), Decimal(0))
                principal = payment - min(payment, interest)
                remaining = remaining + interest - payment
                paid += payment
                principal_repaid += principal
                rounded = quantize(paid, currency)
                amount = rounded - paid_rounded
                paid_rounded = rounded
                if amount > 0:
                    rows.append((month, amount, quantize(principal_repaid, currency)))
        total_principal = quantize(principal_repaid, currency)
    if not rows:
        raise ValueError("phases: the plan asks for no payment at all")
    parts = _split(rows, total_principal)
    return RepaymentSchedule(
        currency=currency,
        balance=balance,
        capitalised_interest=total_principal - balance,
        instalments=tuple(
            Instalment(
                number=number,
                due_date=add_months(terms.first_due, month - 1),
                principal=principal,
                interest=amount - principal,
                amount=amount,
            )
            for number, ((month, amount, _), principal) in enumerate(
                zip(rows, parts, strict=True), start=1
            )
        ),
    )


def _split(rows: list[tuple[int, Decimal, Decimal]], total_principal: Decimal) -> list[Decimal]:
    """Principal part of each row: the rounded running principal, never more than the row's
    amount; the last row takes what is left, and if that exceeds its amount (only possible
    with amounts of a few minor units) the excess moves to earlier rows' interest."""
    principals: list[Decimal] = []
    allocated = Decimal(0)
    for _, amount, running in rows[:-1]:
        part = min(max(running - allocated, Decimal(0)), amount)
        principals.append(part)
        allocated += part
    last_amount = rows[-1][1]
    last = total_principal - allocated
    excess = last - last_amount
    for index in range(len(principals) - 1, -1, -1):
        if excess <= 0:
            break
        room = rows[index][1] - principals[index]
        moved = min(room, excess)
        principals[index] += moved
        excess -= moved
        last -= moved
    principals.append(last)
    return principals
