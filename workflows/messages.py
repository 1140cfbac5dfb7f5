"""The case workflow's interface: start argument, update requests and the audit query.

Update requests carry opaque staff ids and reason codes, never personal data.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.assessment import FinancialProfile, ReasonCode
from schemas.case import CaseStage
from schemas.events import OpaqueId
from schemas.plan import ApprovalAuthority, OptionId
from workflows.state import CaseState, DecisionRecord, NoteRecord, StageChange

Text = Annotated[str, Field(min_length=1, max_length=2000)]


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class CaseStart(BaseModel):
    """``CaseWorkflow.run``'s one argument. ``carried`` is only set by continue-as-new."""

    loan_id: str
    delinquent_since: date
    continue_as_new_after_events: int = 5_000
    """Safety margin under Temporal's 50k-event limit; a 36-month plan stays well below 10k."""
    carried: CaseState | None = None


class SubmitFinancials(_Message):
    profile: FinancialProfile


class ChooseOption(_Message):
    option_id: OptionId


class CounterProposal(_Message):
    """The borrower cannot take any offered option: a revised budget to plan against."""

    profile: FinancialProfile
    note: Text | None = None


class Decline(_Message):
    reason: ReasonCode = "BORROWER_DECLINED"


class Approve(_Message):
    option_ids: Annotated[tuple[OptionId, ...], Field(min_length=1)]
    approver_id: OpaqueId
    authority: ApprovalAuthority


class Reject(_Message):
    option_ids: Annotated[tuple[OptionId, ...], Field(min_length=1)]
    approver_id: OpaqueId
    authority: ApprovalAuthority
    reason: ReasonCode


class SignatureCompleted(_Message):
    """The e-signature provider's callback, relayed; confirmed against the provider."""

    envelope_id: str


class Pause(_Message):
    staff_id: OpaqueId
    breathing_space: bool = False
    """A statutory breathing space / moratorium: for the policy's length, then resumes."""
    until: AwareDatetime | None = None
    """Operator pause only: None until resumed by hand."""
    reason: ReasonCode = "OPERATOR_PAUSE"


class Resume(_Message):
    staff_id: OpaqueId
    note: Text | None = None


class Dispute(_Message):
    reason: ReasonCode = "DEBT_DISPUTED"
    raised_by: OpaqueId


class ResolveDispute(_Message):
    staff_id: OpaqueId
    upheld: bool
    """True: the borrower was right and the debt is not collectable; the case closes."""
    note: Text


class Note(_Message):
    author_id: OpaqueId
    text: Text


class SituationChanged(_Message):
    """The borrower's circumstances changed: re-assess against this profile."""

    profile: FinancialProfile


class Accepted(_Message):
    """What every update returns: the stage after it was applied."""

    stage: CaseStage
    detail: str = ""


class CaseAudit(_Message):
    stages: tuple[StageChange, ...]
    decisions: tuple[DecisionRecord, ...]
    notes: tuple[NoteRecord, ...]
    run_count: int
