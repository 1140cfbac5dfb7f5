"""The case as operations staff see it (DESIGN §3 queries)."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, Field

from schemas.assessment import Assessment, Contract, ReasonCode, Tier
from schemas.contact import ContactAttempt, ContactHolds
from schemas.money import Amount, Currency
from schemas.plan import Agreement, ApprovalAuthority, Instalment, PlanProposal


class CaseStage(StrEnum):
    COLLECT_INFO = "collect_info"
    ASSESS = "assess"
    PROPOSE = "propose"
    SIGN = "sign"
    TRACK = "track"
    CLOSED = "closed"


class CaseOutcome(StrEnum):
    CURED = "cured"
    SETTLED = "settled"
    ESCALATED_COLLECTIONS = "escalated_collections"
    ESCALATED_LEGAL = "escalated_legal"
    DECLINED = "declined"
    WRITTEN_OFF = "written_off"
    SUPERSEDED = "superseded"
    """A new delinquency episode of the same loan opened its own case."""


class InstalmentStatus(StrEnum):
    SCHEDULED = "scheduled"
    PAID = "paid"
    MISSED = "missed"


class TrackedInstalment(Contract):
    instalment: Instalment
    status: InstalmentStatus = InstalmentStatus.SCHEDULED
    paid_amount: Amount | None = None
    paid_at: AwareDatetime | None = None


class CheckpointKind(StrEnum):
    INFO_REMINDER = "info_reminder"
    INFO_DEADLINE = "info_deadline"
    APPROVAL_SLA = "approval_sla"
    OFFER_REMINDER = "offer_reminder"
    OFFER_DEADLINE = "offer_deadline"
    SIGNATURE_REMINDER = "signature_reminder"
    SIGNATURE_EXPIRY = "signature_expiry"
    INSTALMENT_DUE = "instalment_due"
    REASSESSMENT = "reassessment"
    HOLD_ENDS = "hold_ends"
    CONTACT_DEFERRED = "contact_deferred"
    """A contact blocked by the rules (quiet hours, caps) is tried again."""


class Checkpoint(Contract):
    kind: CheckpointKind
    at: AwareDatetime


class Attention(Contract):
    """The case waits for a human: a decision could not be made or an external system refused
    a request. Staff fix the cause and retry the step."""

    reason: ReasonCode
    detail: str
    since: AwareDatetime


class HoldInForce(Contract):
    """One hold on the case, by its own reason code (a statutory moratorium is not an operator
    pause)."""

    reason: ReasonCode
    first_day: date | None = None
    """A moratorium's first day in the borrower's calendar."""
    until: AwareDatetime | None = None
    """When it lifts by itself; None: when a person lifts it (or records the end of
    treatment)."""


class BalanceNow(Contract):
    """The balance and arrears now (``engine.balance``): the loan position or the signed plan,
    less the payments reported since; the ledger decides each instalment at its checkpoint."""

    currency: Currency
    outstanding: Amount
    arrears: Amount
    overdue_since: date | None = None
    days_past_due: int = 0
    paid_since_basis: Amount
    """Payments reported since the loan position (or the ledger) was read."""
    last_payment_at: AwareDatetime | None = None
    basis: Literal["loan", "plan"]


class ApprovalStatus(Contract):
    """Options waiting for a staff member's approval, and the authority the highest needs."""

    option_ids: tuple[str, ...]
    required: ApprovalAuthority
    requested_at: AwareDatetime
    escalations: int = 0


class CaseView(Contract):
    """The full case view returned by the workflow query."""

    case_id: str
    loan_id: str
    stage: CaseStage
    policy_version: str
    opened_at: AwareDatetime
    time_scale: int = 1
    """Policy seconds per server second: above 1 only in a simulation's compressed time."""
    tier: Tier | None = None
    reasons: tuple[ReasonCode, ...] = ()
    assessment: Assessment | None = None
    proposal: PlanProposal | None = None
    agreement: Agreement | None = None
    envelope_id: str | None = None
    """The e-signature envelope the case waits on (sign stage only)."""
    schedule: tuple[TrackedInstalment, ...] = ()
    next_checkpoint: Checkpoint | None = None
    contact_log: tuple[ContactAttempt, ...] = ()
    holds: ContactHolds = Field(default_factory=ContactHolds)
    holds_in_force: tuple[HoldInForce, ...] = ()
    time_zone: str | None = None
    """The borrower's time zone: due dates, deadlines and quiet hours are their local days."""
    attention: Attention | None = None
    assigned_to: str | None = None
    balance: BalanceNow | None = None
    approval: ApprovalStatus | None = None
    approved_by: dict[str, str] = Field(default_factory=dict)
    """Option id → the staff member who approved it (``policy``: needed no approval)."""
    portfolio: str | None = None
    broken_plans: int = 0
    outcome: CaseOutcome | None = None
    outcome_reasons: tuple[ReasonCode, ...] = ()
    closed_at: AwareDatetime | None = None

    @property
    def is_closed(self) -> bool:
        return self.outcome is not None
