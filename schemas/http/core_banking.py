"""Core banking over HTTP: loans, ledger, credit record, contact details, restructures.

The loan itself is served in the contract of ``loan.overdue.v1`` (``schemas.events.LoanOverdue``)
and the ledger position as ``activities.core_banking.LedgerPosition``; the rest is here.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.money import Currency, InboundAmount

IDEMPOTENCY_HEADER = "Idempotency-Key"
MoneyString = InboundAmount
"""An amount in a request: a decimal string (a JSON number is refused), the schema's pattern
being the validator's own (``schemas.money``)."""


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class ScheduledInstalment(_Body):
    number: Annotated[int, Field(ge=1, le=600)]
    due_date: date
    amount: MoneyString


class RestructureInstruction(_Body):
    """Change the loan's repayment terms to the signed agreement's schedule. Sent with
    ``Idempotency-Key: <agreement_id>``: a repeat returns the first receipt and changes nothing."""

    agreement_id: Annotated[str, Field(min_length=1, max_length=128)]
    case_id: Annotated[str, Field(min_length=1, max_length=160)]
    plan_type: Annotated[str, Field(min_length=1, max_length=256)]
    """The plan's levers, ``+``-separated (e.g. ``arrears_capitalisation+term_extension``)."""
    currency: Currency
    instalments: Annotated[tuple[ScheduledInstalment, ...], Field(min_length=1, max_length=600)]
    signed_at: AwareDatetime


class Restructure(_Body):
    """A restructure as the loan book holds it."""

    agreement_id: str
    loan_id: str
    restructure_ref: str
    """The bank's reference, unique for ever (never reused after a restart)."""
    applied_at: AwareDatetime
    instalment_count: int
    requests: int
    """How many times the instruction arrived (replays included); it was applied once."""


class CustomerContactDetails(_Body):
    phone: str | None = None
    email: str | None = None
    time_zone: str
    """IANA name, e.g. ``Asia/Shanghai``."""
