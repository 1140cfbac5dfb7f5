"""Repayment schedules: exact Decimal amortisation, rounding into the last instalment.

Every schedule repays ``total outstanding - waived`` exactly in its principal parts; interest is
charged monthly at ``annual rate / 12`` on the amortising balance and rounded to the currency's
minor unit each month.
"""

from __future__ import annotations

import calendar
from datetime import date
from decimal import Decimal, localcontext

from schemas.events import LoanOverdue
from schemas.money import quantize
from schemas.plan import Instalment, PlanTerms, PlanType, RepaymentSchedule

# Enough digits that (1 + r)^n over 600 months loses nothing at the minor unit.
_PRECISION = 40


def add_months(anchor: date, months: int) -> date:
    """The same day of month ``months`` later, clamped to the month's last day."""
    month_index = anchor.month - 1 + months
    year, month = anchor.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(anchor.day, calendar.monthrange(year, month)[1]))


def due_dates(first_due: date, count: int) -> list[date]:
    return [add_months(first_due, k) for k in range(count)]


def level_payment(balance: Decimal, monthly_rate: Decimal, months: int) -> Decimal:
    """The annuity payment that repays ``balance`` in ``months`` equal payments (unrounded)."""
    with localcontext() as context:
        context.prec = _PRECISION
        if monthly_rate == 0:
            return balance / months
        return balance * monthly_rate / (1 - (1 + monthly_rate) ** -months)


def monthly_rate(annual_rate: Decimal) -> Decimal:
    with localcontext() as context:
        context.prec = _PRECISION
        return annual_rate / 12


def amortise(
    *,
    balance: Decimal,
    annual_rate: Decimal,
    months: int,
    currency: str,
    reduced_months: int = 0,
    reduction_share: Decimal = Decimal(0),
) -> list[tuple[Decimal, Decimal]]:
    """(principal, interest) per month for a level annuity; the first ``reduced_months``
    payments are ``reduction_share`` below the level payment (never below that month's
    interest, so the balance never grows), then the rest is re-amortised. The last month takes
    whatever balance is left, so the principal parts sum exactly to ``balance``."""
    rate = monthly_rate(annual_rate)
    payment = quantize(level_payment(balance, rate, months), currency)
    reduced_payment = quantize(payment * (1 - reduction_share), currency)
    remaining = balance
    rows: list[tuple[Decimal, Decimal]] = []
    for month in range(1, months + 1):
        interest = quantize(remaining * rate, currency)
        if month == months:
            principal = remaining
        else:
            if month <= reduced_months:
                due = max(reduced_payment, interest)
            else:
                if month == reduced_months + 1 and reduced_months:
                    payment = quantize(level_payment(remaining, rate, months - month + 1), currency)
                due = payment
            principal = min(max(due - interest, Decimal(0)), remaining)
        remaining -= principal
        rows.append((principal, interest))
    return rows


def spread_evenly(amount: Decimal, months: int, currency: str) -> list[Decimal]:
    """Equal parts, the rounding difference in the last one."""
    part = quantize(amount / months, currency)
    parts = [part] * (months - 1)
    return [*parts, amount - sum(parts, Decimal(0))]


def build_schedule(loan: LoanOverdue, terms: PlanTerms, first_due: date) -> RepaymentSchedule:
    """The one way to turn plan terms into a schedule (at proposal and again at signature).

    The restructured balance is the total outstanding (principal, interest, penalty and fees,
    arrears capitalised) less what is waived. An arrears spread keeps the contractual
    amortisation of the current balance and adds the overdue amount, interest-free, in equal
    parts over the first ``arrears_spread_months`` instalments.
    """
    currency = loan.currency
    balance = loan.total_outstanding - terms.waived
    if balance <= 0:
        raise ValueError("waived: leaves nothing to repay")
    months = terms.term_months
    if terms.plan_type is PlanType.LUMP_SUM_SETTLEMENT:
        rows = [(balance, Decimal(0))]
        months = 1
    elif terms.plan_type is PlanType.ARREARS_SPREAD:
        arrears = min(loan.overdue_amount, balance)
        current = balance - arrears
        rows = (
            amortise(
                balance=current,
                annual_rate=terms.annual_interest_rate,
                months=months,
                currency=currency,
            )
            if current > 0
            else [(Decimal(0), Decimal(0))] * months
        )
        extra = spread_evenly(arrears, terms.arrears_spread_months, currency)
        extra += [Decimal(0)] * (months - len(extra))
        rows = [(p + e, i) for (p, i), e in zip(rows, extra, strict=True)]
    else:
        rows = amortise(
            balance=balance,
            annual_rate=terms.annual_interest_rate,
            months=months,
            currency=currency,
            reduced_months=terms.reduced_months,
            reduction_share=terms.reduction_share,
        )
    return RepaymentSchedule(
        currency=currency,
        balance=balance,
        annual_interest_rate=terms.annual_interest_rate,
        instalments=tuple(
            Instalment(
                number=number,
                due_date=due,
                principal=principal,
                interest=interest,
                amount=principal + interest,
            )
            for number, (due, (principal, interest)) in enumerate(
                zip(due_dates(first_due, months), rows, strict=True), start=1
            )
        ),
    )
