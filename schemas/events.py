"""Kafka event contracts (DESIGN §4). Inbound events are keyed by ``loan_id``; JSON; strict."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AwareDatetime,
    ConfigDict,
    Discriminator,
    Field,
    GetJsonSchemaHandler,
    Tag,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from schemas.channels import ContactChannel, Direction
from schemas.lean import LeanModel
from schemas.money import (
    Currency,
    InboundAmount,
    InboundPositiveAmount,
    Rate,
    check_scale,
    currency_scale_rules,
)

# Identifiers end up in workflow ids and Kafka keys: opaque, never personal data.
OpaqueId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]


class Event(LeanModel):
    """Common envelope of every inbound event."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    TOPIC: ClassVar[str]
    MONEY_FIELDS: ClassVar[tuple[str, ...]] = ()

    event_id: OpaqueId
    occurred_at: AwareDatetime
    schema_version: Literal[1]
    loan_id: OpaqueId

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        # The money fields' decimals depend on the currency: say so, as the validator does.
        schema = handler.resolve_ref_schema(handler(core_schema))
        if cls.MONEY_FIELDS:
            schema["allOf"] = currency_scale_rules(cls.MONEY_FIELDS)
        return schema

    @model_validator(mode="after")
    def _money_scale(self) -> Event:
        currency = getattr(self, "currency", None)
        if currency is not None:
            for name in self.MONEY_FIELDS:
                value = getattr(self, name)
                if value is not None:
                    check_scale(value, currency, name)
        return self


class ProductType(StrEnum):
    CREDIT_CARD = "credit_card"
    PERSONAL_LOAN = "personal_loan"
    MORTGAGE = "mortgage"
    AUTO_LOAN = "auto_loan"
    SME_LOAN = "sme_loan"


class LoanOverdue(Event):
    """``loan.overdue.v1``: a loan is (still) past due. Repeated daily while delinquent."""

    TOPIC = "loan.overdue.v1"
    MONEY_FIELDS = (
        "principal_outstanding",
        "interest_outstanding",
        "penalty_interest_outstanding",
        "fees_outstanding",
        "overdue_amount",
        "contractual_instalment",
    )

    borrower_id: OpaqueId
    product: ProductType
    currency: Currency
    principal_outstanding: InboundAmount
    interest_outstanding: InboundAmount
    penalty_interest_outstanding: InboundAmount
    fees_outstanding: InboundAmount
    overdue_amount: InboundAmount
    days_past_due: Annotated[int, Field(ge=1, le=3650, strict=True)]
    delinquent_since: date
    contractual_instalment: InboundAmount
    remaining_term_months: Annotated[int, Field(ge=0, le=600, strict=True)]
    annual_interest_rate: Rate
    """Nominal annual rate as a fraction, e.g. ``0.0435``."""
    portfolio: OpaqueId | None = None
    """The bank's portfolio (e.g. ``cards``): picks the case's policy (``decisions.portfolios``)."""

    @model_validator(mode="after")
    def _consistent(self) -> LoanOverdue:
        if self.delinquent_since > self.occurred_at.date():
            raise ValueError("delinquent_since: after occurred_at")
        if self.overdue_amount > self.total_outstanding:
            raise ValueError("overdue_amount: exceeds the total outstanding")
        return self

    @property
    def total_outstanding(self) -> Decimal:
        return (
            self.principal_outstanding
            + self.interest_outstanding
            + self.penalty_interest_outstanding
            + self.fees_outstanding
        )

    @property
    def case_id(self) -> str:
        return case_id(self.loan_id, self.delinquent_since)


class PaymentChannel(StrEnum):
    BANK_TRANSFER = "bank_transfer"
    DIRECT_DEBIT = "direct_debit"
    CARD = "card"
    BRANCH = "branch"
    MOBILE_APP = "mobile_app"


class LoanPayment(Event):
    """``loan.payment.v1``: money received against the loan."""

    TOPIC = "loan.payment.v1"
    MONEY_FIELDS = ("amount",)

    currency: Currency
    amount: InboundPositiveAmount
    paid_at: AwareDatetime
    channel: PaymentChannel


class LoanStatusKind(StrEnum):
    CURED = "cured"
    CHARGED_OFF = "charged_off"
    CLOSED = "closed"


class LoanStatus(Event):
    """``loan.status.v1``: core banking changed the loan's status."""

    TOPIC = "loan.status.v1"

    status: LoanStatusKind


class HardshipReason(StrEnum):
    JOB_LOSS = "job_loss"
    INCOME_REDUCTION = "income_reduction"
    ILLNESS = "illness"
    BUSINESS_DOWNTURN = "business_downturn"
    FAMILY_EMERGENCY = "family_emergency"
    NATURAL_DISASTER = "natural_disaster"
    OTHER = "other"


class CustomerHardship(Event):
    """``customer.hardship.v1``: the borrower declared their situation (portal or agent)."""

    TOPIC = "customer.hardship.v1"
    MONEY_FIELDS = (
        "monthly_income",
        "essential_expenses",
        "other_debt_payments",
        "lump_sum_available",
    )

    borrower_id: OpaqueId
    currency: Currency
    monthly_income: InboundAmount
    essential_expenses: InboundAmount
    other_debt_payments: InboundAmount
    household_size: Annotated[int, Field(ge=1, le=30, strict=True)]
    reason: HardshipReason
    temporary: bool = Field(strict=True)
    expected_recovery_months: Annotated[int, Field(ge=1, le=60, strict=True)] | None = None
    lump_sum_available: InboundAmount | None = None
    """Money the borrower could pay at once (savings, family help); enables a settlement."""


class ContactInteraction(Event):
    """``contact.interaction.v1``: the contact centre had a contact with the borrower about this
    loan outside Accord's own attempts — the borrower called, an agent held a conversation or
    placed a call by hand. ``occurred_at`` is when it happened. One event per loan discussed.
    It goes into the borrower's contact ledger, where the contact rules count it: a
    conversation starts Reg F's seven quiet days for this loan."""

    TOPIC = "contact.interaction.v1"

    borrower_id: OpaqueId
    channel: ContactChannel
    direction: Direction
    conversation: bool = Field(strict=True)
    """A conversation with the borrower about this loan took place."""


INBOUND_EVENTS: dict[str, type[Event]] = {
    model.TOPIC: model
    for model in (LoanOverdue, LoanPayment, LoanStatus, CustomerHardship, ContactInteraction)
}

# A field only that contract has: a Temporal payload carries no topic to tell them apart.
_DISTINCT_FIELD = {
    LoanOverdue.TOPIC: "days_past_due",
    LoanPayment.TOPIC: "paid_at",
    LoanStatus.TOPIC: "status",
    CustomerHardship.TOPIC: "household_size",
    ContactInteraction.TOPIC: "conversation",
}


def _inbound_topic(value: Any) -> str | None:
    if isinstance(value, Event):
        return value.TOPIC
    if isinstance(value, dict):
        return next((topic for topic, name in _DISTINCT_FIELD.items() if name in value), None)
    return None


InboundEvent = Annotated[
    Annotated[LoanOverdue, Tag(LoanOverdue.TOPIC)]
    | Annotated[LoanPayment, Tag(LoanPayment.TOPIC)]
    | Annotated[LoanStatus, Tag(LoanStatus.TOPIC)]
    | Annotated[CustomerHardship, Tag(CustomerHardship.TOPIC)]
    | Annotated[ContactInteraction, Tag(ContactInteraction.TOPIC)],
    Discriminator(_inbound_topic),
]
"""Any inbound event, as the case receives it (one signal for all of them)."""


def case_id(loan_id: str, delinquent_since: date) -> str:
    """One case per loan per delinquency episode (DESIGN §3)."""
    return f"case-{loan_id}-{delinquent_since:%Y%m%d}"


_CASE_ID = re.compile(r"^case-(?P<loan_id>.+)-\d{8}$")


def loan_id_of_case(case_id_: str) -> str:
    """The loan a case id names (the inverse of ``case_id``); raises ``ValueError``."""
    matched = _CASE_ID.match(case_id_)
    if matched is None:
        raise ValueError(f"case_id: {case_id_!r} is not case-<loan id>-<yyyymmdd>")
    return matched["loan_id"]


def parse_inbound(topic: str, raw: bytes | str) -> Event:
    """Validate a raw Kafka value for ``topic``; raises ``pydantic.ValidationError``."""
    return INBOUND_EVENTS[topic].model_validate_json(raw, extra="forbid")


def json_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schema of each inbound contract, for producers to validate against."""
    return {topic: model.model_json_schema() for topic, model in INBOUND_EVENTS.items()}
