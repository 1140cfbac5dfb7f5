"""The case's state: everything the workflow knows, carried whole across continue-as-new."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from decisions.clock import PolicyClock
from decisions.policy import Policy
from schemas.assessment import Assessment, CreditRecord, FinancialProfile, ReasonCode
from schemas.case import CaseOutcome, CaseStage, Checkpoint, TrackedInstalment
from schemas.contact import ContactAttempt, ContactHolds
from schemas.events import LoanOverdue, LoanStatus
from schemas.outbound import ReassessmentTrigger
from schemas.plan import Agreement, ApprovalAuthority, PlanProposal

MAX_REMEMBERED_EVENT_IDS = 2_000
"""De-duplication window: far more than one episode's redeliveries (one overdue event a day)."""
MAX_CONTACT_LOG = 500
"""Enough for the rolling caps (7 days) and the case view; older attempts are in history."""


class StageChange(BaseModel):
    model_config = ConfigDict(frozen=True)

    stage: CaseStage
    at: datetime
    reason: ReasonCode


class DecisionRecord(BaseModel):
    """Every decision with the policy version it was made under."""

    model_config = ConfigDict(frozen=True)

    kind: str
    at: datetime
    policy_version: str
    contact_rules_version: str | None = None
    summary: tuple[str, ...] = ()


class NoteRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    author_id: str
    at: datetime
    text: str


class PendingApproval(BaseModel):
    option_ids: tuple[str, ...]
    required: ApprovalAuthority
    requested_at: datetime
    escalations: int = 0


class CaseState(BaseModel):
    loan_id: str
    delinquent_since: date
    case_id: str
    opened_at: datetime | None = None
    clock: PolicyClock | None = None
    """Set only for a simulation's compressed time; None is the server's clock."""
    run_count: int = 1

    stage: CaseStage = CaseStage.COLLECT_INFO
    stages: list[StageChange] = Field(default_factory=list)
    decisions: list[DecisionRecord] = Field(default_factory=list)
    notes: list[NoteRecord] = Field(default_factory=list)
    applied_event_ids: list[str] = Field(default_factory=list)
    """Oldest first, at most ``MAX_REMEMBERED_EVENT_IDS``."""
    published_count: int = 0

    policy: Policy | None = None
    loan: LoanOverdue | None = None
    credit: CreditRecord | None = None
    loan_status: LoanStatus | None = None

    profile: FinancialProfile | None = None
    profile_received_at: datetime | None = None
    info_requested_at: datetime | None = None
    assessment: Assessment | None = None
    reassessment_trigger: ReassessmentTrigger | None = None

    proposal: PlanProposal | None = None
    approved_option_ids: list[str] = Field(default_factory=list)
    withdrawn_option_ids: list[str] = Field(default_factory=list)
    pending_approval: PendingApproval | None = None
    chosen_option_id: str | None = None
    counter_profile: FinancialProfile | None = None
    counter_rounds: int = 0
    reproposal_rounds: int = 0
    declined_reason: str | None = None

    agreement: Agreement | None = None
    agreements_issued: int = 0
    envelope_id: str | None = None
    signature_claimed: bool = False
    schedule: list[TrackedInstalment] = Field(default_factory=list)
    next_instalment: int = 0
    """Index into ``schedule`` of the next checkpoint."""
    overrun_checkpoints: int = 0
    """Checkpoints after the last due date while arrears remain."""
    schedule_shift: timedelta = timedelta(0)
    """Time the plan spent on hold (breathing space, dispute, pause): due dates move by it."""
    consecutive_missed: int = 0
    broken_plans: int = 0
    next_reassessment_at: datetime | None = None

    contact_log: list[ContactAttempt] = Field(default_factory=list)
    contacts_made: int = 0
    holds: ContactHolds = Field(default_factory=ContactHolds)
    next_checkpoint: Checkpoint | None = None

    outcome: CaseOutcome | None = None
    outcome_reasons: list[str] = Field(default_factory=list)
    closed_at: datetime | None = None
