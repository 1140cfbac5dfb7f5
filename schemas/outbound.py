"""Outbound case events on ``case.events.v1`` (DESIGN §4), keyed by ``loan_id``.

One topic, one envelope, a ``kind`` discriminator. No personal data: ids, tiers, reason codes,
amounts and schedules only.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, ClassVar, Literal

from pydantic import AwareDatetime, Field, TypeAdapter

from schemas.assessment import Contract, ReasonCode, Tier
from schemas.case import CaseOutcome
from schemas.contact import ContactChannel, ContactOutcome
from schemas.events import HardshipReason, OpaqueId
from schemas.money import Money
from schemas.plan import (
    ApprovalAuthority,
    Lever,
    OptionId,
    PlanOption,
    PlanTerms,
    RepaymentSchedule,
)

CASE_EVENTS_TOPIC = "case.events.v1"

CaseId = Annotated[str, Field(pattern=r"^case-[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}-\d{8}$")]
EventId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")]


class CaseEventBase(Contract):
    TOPIC: ClassVar[str] = CASE_EVENTS_TOPIC

    event_id: EventId
    """Deterministic per case and step, so a re-published event is recognisably the same."""
    occurred_at: AwareDatetime
    schema_version: Literal[1]
    case_id: CaseId
    loan_id: OpaqueId


class CaseOpened(CaseEventBase):
    kind: Literal["opened"] = "opened"
    delinquent_since: date
    days_past_due: Annotated[int, Field(ge=1, le=3650, strict=True)]
    overdue: Money
    policy_version: str


class CaseContacted(CaseEventBase):
    kind: Literal["contacted"] = "contacted"
    channel: ContactChannel
    outcome: ContactOutcome


class InfoReceived(CaseEventBase):
    kind: Literal["info_received"] = "info_received"
    hardship_reason: HardshipReason | None
    temporary: bool = Field(strict=True)


class CaseAssessed(CaseEventBase):
    kind: Literal["assessed"] = "assessed"
    tier: Tier
    reasons: Annotated[tuple[ReasonCode, ...], Field(min_length=1)]
    policy_version: str
    affordable_instalment: Money | None


class OptionSummary(Contract):
    """What the borrower is offered, in brief (the full terms are in the case view)."""

    option_id: OptionId
    levers: tuple[Lever, ...]
    rank: Annotated[int, Field(ge=1, strict=True)]
    term_months: Annotated[int, Field(ge=1, le=600, strict=True)]
    """Months from the first due date to the last instalment."""
    relief_months: Annotated[int, Field(ge=0, le=600, strict=True)]
    """Months of lower (or no) instalments at the start."""
    instalment_count: Annotated[int, Field(ge=1, le=600, strict=True)]
    first_due: date
    first_instalment: Money
    max_instalment: Money
    total_payable: Money
    waived: Money
    required_authority: ApprovalAuthority

    @classmethod
    def of(cls, option: PlanOption) -> OptionSummary:
        terms = option.terms
        currency = terms.currency
        return cls(
            option_id=option.option_id,
            levers=terms.levers,
            rank=option.rank,
            term_months=terms.term_months,
            relief_months=terms.relief_months,
            instalment_count=option.instalment_count,
            first_due=terms.first_due,
            first_instalment=Money(amount=option.first_instalment, currency=currency),
            max_instalment=Money(amount=option.max_instalment, currency=currency),
            total_payable=Money(amount=option.total_payable, currency=currency),
            waived=Money(amount=terms.waived, currency=currency),
            required_authority=option.required_authority,
        )


class PlanProposed(CaseEventBase):
    kind: Literal["proposed"] = "proposed"
    policy_version: str
    options: tuple[OptionSummary, ...]


class OptionApproved(CaseEventBase):
    kind: Literal["approved"] = "approved"
    option_id: OptionId
    authority: ApprovalAuthority
    approved_by: OpaqueId
    """Staff id, or ``policy`` for an automatic approval."""


class AgreementSigned(CaseEventBase):
    """Core banking applies ``schedule`` as the loan's new repayment schedule."""

    kind: Literal["signed"] = "signed"
    agreement_id: EventId
    option_id: OptionId
    terms: PlanTerms
    schedule: RepaymentSchedule
    signed_at: AwareDatetime


class InstalmentPaid(CaseEventBase):
    kind: Literal["instalment_paid"] = "instalment_paid"
    number: Annotated[int, Field(ge=1, le=600, strict=True)]
    due_date: date
    amount: Money
    paid_at: AwareDatetime


class InstalmentMissed(CaseEventBase):
    kind: Literal["instalment_missed"] = "instalment_missed"
    number: Annotated[int, Field(ge=1, le=600, strict=True)]
    due_date: date
    amount_due: Money
    consecutive_missed: Annotated[int, Field(ge=1, le=600, strict=True)]


class ReassessmentTrigger(StrEnum):
    PERIODIC = "periodic"
    BORROWER_REQUEST = "borrower_request"
    BROKEN_PLAN = "broken_plan"


class CaseReassessed(CaseEventBase):
    kind: Literal["reassessed"] = "reassessed"
    trigger: ReassessmentTrigger
    previous_tier: Tier | None
    tier: Tier
    reasons: Annotated[tuple[ReasonCode, ...], Field(min_length=1)]
    policy_version: str


class PauseReason(StrEnum):
    DISPUTE = "dispute"
    BREATHING_SPACE = "breathing_space"
    MENTAL_HEALTH_CRISIS = "mental_health_crisis"
    OPERATOR = "operator"


class CasePaused(CaseEventBase):
    kind: Literal["paused"] = "paused"
    reason: PauseReason
    until: AwareDatetime | None
    """None: until a human resumes the case."""


class CaseResumed(CaseEventBase):
    kind: Literal["resumed"] = "resumed"


class CaseClosed(CaseEventBase):
    kind: Literal["closed"] = "closed"
    outcome: CaseOutcome
    reasons: Annotated[tuple[ReasonCode, ...], Field(min_length=1)]


CaseEvent = Annotated[
    CaseOpened
    | CaseContacted
    | InfoReceived
    | CaseAssessed
    | PlanProposed
    | OptionApproved
    | AgreementSigned
    | InstalmentPaid
    | InstalmentMissed
    | CaseReassessed
    | CasePaused
    | CaseResumed
    | CaseClosed,
    Field(discriminator="kind"),
]

CASE_EVENT: TypeAdapter[CaseEvent] = TypeAdapter(CaseEvent)


def parse_case_event(raw: bytes | str) -> CaseEvent:
    """Validate a raw ``case.events.v1`` value; raises ``pydantic.ValidationError``."""
    return CASE_EVENT.validate_json(raw)
