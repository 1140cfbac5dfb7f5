"""What people do to a case: staff and borrower actions, one typed union.

Every action reaches the case through one update (``CaseWorkflow.act``) and is checked by
``engine.rules.refusal`` first: a refused action changes nothing and the caller is told why.
Actions carry opaque staff ids and reason codes, never personal data.

Staff actions (``STAFF_ACTIONS``) carry a ``credential``: a token the desk (or an administrator's
key) signed for this staff member, this case and this very action. The workflow verifies it
(``staff.credentials``) and the rules check the verified actor — the staff id the action names
must be the signed-in one, and what it approves must be within the authority the policy gives
the actor's role. A borrower's action may carry one too, when an agent records it.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from engine.state import DecisionRecord, NoteRecord, StageChange
from schemas.assessment import FinancialProfile, ReasonCode
from schemas.case import CaseStage
from schemas.contact import ContactChannel, Direction
from schemas.events import OpaqueId
from schemas.plan import ApprovalAuthority, OptionId

Text = Annotated[str, Field(min_length=1, max_length=2000)]


class _Action(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    credential: str | None = Field(default=None, max_length=4096)
    """Signed by the desk or an administrator for this staff member, case and action."""

    def signed_content(self) -> bytes:
        """What a credential signs: the action as JSON, without the credential."""
        return self.model_dump_json(exclude={"credential"}).encode()


# --- the borrower (through an agent, the portal or the e-signature provider) -----------------


class SubmitFinancials(_Action):
    action: Literal["submit_financials"] = "submit_financials"
    profile: FinancialProfile


class ChooseOption(_Action):
    action: Literal["choose_option"] = "choose_option"
    option_id: OptionId


class CounterPropose(_Action):
    """The borrower cannot take any offered option: a revised budget to plan against."""

    action: Literal["counter_propose"] = "counter_propose"
    profile: FinancialProfile
    note: Text | None = None


class Decline(_Action):
    action: Literal["decline"] = "decline"
    reason: ReasonCode = "BORROWER_DECLINED"


class Sign(_Action):
    """The e-signature provider's callback, relayed; confirmed with the provider before use."""

    action: Literal["sign"] = "sign"
    envelope_id: str


class SituationChanged(_Action):
    """The borrower's circumstances changed: re-assess against this profile."""

    action: Literal["situation_changed"] = "situation_changed"
    profile: FinancialProfile


# --- staff -----------------------------------------------------------------------------------


class Approve(_Action):
    action: Literal["approve"] = "approve"
    option_ids: Annotated[tuple[OptionId, ...], Field(min_length=1)]
    approver_id: OpaqueId
    authority: ApprovalAuthority | None = None
    """Ignored: the authority is the one the policy gives the signed-in actor's role. Kept so
    actions recorded before credentials existed still read."""


class Reject(_Action):
    action: Literal["reject"] = "reject"
    option_ids: Annotated[tuple[OptionId, ...], Field(min_length=1)]
    approver_id: OpaqueId
    authority: ApprovalAuthority | None = None
    """Ignored, as ``Approve.authority``."""
    reason: ReasonCode = "APPROVAL_REJECTED"


class Pause(_Action):
    """An operator pause: contact and timers stop until ``until`` or a ``Resume``."""

    action: Literal["pause"] = "pause"
    staff_id: OpaqueId
    until: AwareDatetime | None = None
    reason: ReasonCode = "OPERATOR_PAUSE"


class Resume(_Action):
    action: Literal["resume"] = "resume"
    staff_id: OpaqueId
    note: Text | None = None


class StartBreathingSpace(_Action):
    """A statutory breathing space (moratorium): contact and timers stop at once and until the
    end of the pack's number of days counted from ``starts_on``, then resume by themselves."""

    action: Literal["breathing_space"] = "breathing_space"
    staff_id: OpaqueId
    starts_on: date | None = None
    """Its first day: the day after its entry in the register (None: tomorrow, the borrower's
    calendar)."""
    reason: ReasonCode = "BREATHING_SPACE"


class StartMentalHealthCrisis(_Action):
    """A mental-health crisis moratorium: contact and timers stop, open-ended, until the end
    of the crisis treatment is recorded (``TreatmentEnded``) and the pack's days after it pass."""

    action: Literal["mental_health_crisis"] = "mental_health_crisis"
    staff_id: OpaqueId
    starts_on: date | None = None
    """Its first day: the day after its entry in the register (None: tomorrow)."""
    reason: ReasonCode = "MENTAL_HEALTH_CRISIS"


class TreatmentEnded(_Action):
    """The borrower's mental-health crisis treatment ended on ``ended_on`` (their calendar):
    the moratorium now ends after the pack's number of days from the next day."""

    action: Literal["treatment_ended"] = "treatment_ended"
    staff_id: OpaqueId
    ended_on: date
    reason: ReasonCode = "TREATMENT_ENDED"


class Dispute(_Action):
    action: Literal["dispute"] = "dispute"
    raised_by: OpaqueId
    reason: ReasonCode = "DEBT_DISPUTED"


class ResolveDispute(_Action):
    action: Literal["resolve_dispute"] = "resolve_dispute"
    staff_id: OpaqueId
    upheld: bool
    """True: the borrower was right and the debt is not collectable; the case closes."""
    note: Text


class Note(_Action):
    action: Literal["note"] = "note"
    author_id: OpaqueId
    text: Text


class RecordContact(_Action):
    """A contact staff had with the borrower outside Accord's own attempts: an inbound call, a
    conversation, a call placed by hand. It goes into the borrower's contact ledger, where the
    rules count it (a conversation starts Reg F's quiet days)."""

    action: Literal["record_contact"] = "record_contact"
    staff_id: OpaqueId
    channel: ContactChannel = ContactChannel.PHONE
    direction: Direction
    conversation: bool
    """A conversation about the debt took place."""
    at: AwareDatetime | None = None
    """When it happened (None: now)."""
    note: Text | None = None


class Assign(_Action):
    action: Literal["assign"] = "assign"
    staff_id: OpaqueId
    assignee: OpaqueId | None
    """None: back to the unassigned queue."""


class Retry(_Action):
    """The case needs attention (a decision failed, a system refused a request): staff fixed
    the cause; try the step again."""

    action: Literal["retry"] = "retry"
    staff_id: OpaqueId
    note: Text | None = None


CaseAction = Annotated[
    SubmitFinancials
    | ChooseOption
    | CounterPropose
    | Decline
    | Sign
    | SituationChanged
    | Approve
    | Reject
    | Pause
    | Resume
    | StartBreathingSpace
    | Dispute
    | ResolveDispute
    | Note
    | Assign
    | Retry
    | StartMentalHealthCrisis
    | TreatmentEnded
    | RecordContact,
    Field(discriminator="action"),
]
ACTIONS: tuple[type[_Action], ...] = (
    SubmitFinancials,
    ChooseOption,
    CounterPropose,
    Decline,
    Sign,
    SituationChanged,
    Approve,
    Reject,
    Pause,
    Resume,
    StartBreathingSpace,
    Dispute,
    ResolveDispute,
    Note,
    Assign,
    Retry,
    StartMentalHealthCrisis,
    TreatmentEnded,
    RecordContact,
)

STAFF_ACTIONS = frozenset(
    {
        "approve",
        "reject",
        "pause",
        "resume",
        "breathing_space",
        "mental_health_crisis",
        "treatment_ended",
        "record_contact",
        "resolve_dispute",
        "note",
        "assign",
        "retry",
    }
)
"""Actions only a signed-in staff member may take. The rest are the borrower's (through the
portal, the e-signature provider, or an agent on the phone); a dispute may come from either."""


def named_staff(action: _Action) -> str | None:
    """The staff id an action names as the one taking it (None for a borrower's action)."""
    for name in ("approver_id", "staff_id", "author_id"):
        value = getattr(action, name, None)
        if isinstance(value, str):
            return value
    return None


class Accepted(BaseModel):
    """What the update returns: the stage after the action was applied."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    stage: CaseStage
    detail: str = ""


class CaseAudit(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    stages: tuple[StageChange, ...]
    decisions: tuple[DecisionRecord, ...]
    notes: tuple[NoteRecord, ...]
    run_count: int
