"""The case state: everything a case knows, in one object, carried whole across continue-as-new.

Nothing the case knows lives anywhere else — pending interrupts, the events still to publish,
the contact still to make — so a continue-as-new or a cache eviction can never drop anything.

Compact on purpose: a worker keeps hundreds of cached cases in memory and a case lives for
months. Plan options are kept as terms (a schedule is computed where it is shown), the agreement's
schedule is stored once, the contact log keeps only the window the rules and the view need, and
the policy is referenced by version (the workflow holds the policy object itself).

Models read back from workflow histories ignore unknown fields, so a field can be removed later
without breaking the replay of a case that recorded it.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from decisions.clock import PolicyClock
from decisions.contact_ledger import Interaction
from schemas.assessment import Assessment, CreditRecord, FinancialProfile, ReasonCode
from schemas.case import Attention, CaseOutcome, CaseStage, HoldInForce, InstalmentStatus
from schemas.contact import ContactAttempt, ContactHolds
from schemas.events import LoanOverdue, LoanStatusKind
from schemas.lean import LeanModel
from schemas.money import MINOR_UNITS, Currency
from schemas.outbound import CaseEvent, ReassessmentTrigger
from schemas.plan import (
    Agreement,
    ApprovalAuthority,
    Instalment,
    PlanProposal,
    PlanTerms,
    RepaymentSchedule,
)

MAX_REMEMBERED_EVENT_IDS = 128
"""De-duplication window. Kafka redelivers the recent tail only; an older overdue event is
recognised as stale by its ``occurred_at``, and payments are only hints (the ledger decides)."""
MAX_CONTACT_LOG = 50
"""The case view's contact log. The contact rules judge the borrower's contact ledger, not
this log."""
MAX_REMEMBERED_PAYMENTS = 32
"""Payments reported on Kafka, kept until the loan position or the ledger covers them."""


class Record(LeanModel):
    """A mutable part of the case state (the workflow owns the only copy)."""

    model_config = ConfigDict(extra="ignore")


class Entry(LeanModel):
    """An immutable audit entry."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class StageChange(Entry):
    stage: CaseStage
    at: datetime
    reason: ReasonCode


class DecisionRecord(Entry):
    """Every decision and human action, with the policy version it was taken under."""

    kind: str
    at: datetime
    policy_version: str
    contact_rules_version: str | None = None
    summary: tuple[str, ...] = ()
    by: str | None = None
    """The authenticated staff member whose action this was (None: the case itself, or the
    borrower through their own channel)."""


class PaymentNote(Entry):
    """A payment reported on ``loan.payment.v1``: a hint until the ledger is read."""

    at: datetime
    amount: Decimal


class NoteRecord(Entry):
    author_id: str
    at: datetime
    text: str


class Holds(Record):
    """What stops contact and timers. Each hold ends on its own; the case is held while any is
    on. While held, every stage deadline stands still: they move by the time spent held.

    The statutory moratoria keep their legal calendar in the borrower's days: a breathing space
    from its first day (the day after the register entry) for the pack's number of days; a
    mental-health crisis moratorium open-ended until the end of treatment is recorded, then the
    pack's number of days more. Each ``*_until`` is the instant the last day is over."""

    disputed: bool = False
    paused: bool = False
    paused_until: datetime | None = None
    """An operator pause: None until resumed by hand."""
    breathing_space_until: datetime | None = None
    breathing_space_from: date | None = None
    mental_health_crisis: bool = False
    mental_health_crisis_from: date | None = None
    mental_health_crisis_until: datetime | None = None
    """None while the treatment goes on."""
    treatment_ended_on: date | None = None
    held_since: datetime | None = None
    """When the case last went from free to held."""

    def any(self) -> bool:
        return (
            self.disputed
            or self.paused
            or self.breathing_space_until is not None
            or self.mental_health_crisis
        )

    def next_timed_end(self) -> datetime | None:
        """The earliest hold that lifts by itself (a dispute, an untimed pause or a crisis
        moratorium still in treatment never does)."""
        ends = [self.breathing_space_until]
        if self.paused:
            ends.append(self.paused_until)
        if self.mental_health_crisis:
            ends.append(self.mental_health_crisis_until)
        timed = [end for end in ends if end is not None]
        return min(timed) if timed else None

    def for_contact_rules(self) -> ContactHolds:
        return ContactHolds(
            disputed=self.disputed,
            paused=self.paused,
            paused_until=self.paused_until,
            breathing_space_until=self.breathing_space_until,
            mental_health_crisis=self.mental_health_crisis,
            mental_health_crisis_until=self.mental_health_crisis_until,
        )

    def in_force(self) -> tuple[HoldInForce, ...]:
        """Each hold on the case, with its reason code, for the case view."""
        holds = []
        if self.disputed:
            holds.append(HoldInForce(reason="DEBT_DISPUTED"))
        if self.paused:
            holds.append(HoldInForce(reason="OPERATOR_PAUSE", until=self.paused_until))
        if self.breathing_space_until is not None:
            holds.append(
                HoldInForce(
                    reason="BREATHING_SPACE",
                    first_day=self.breathing_space_from,
                    until=self.breathing_space_until,
                )
            )
        if self.mental_health_crisis:
            holds.append(
                HoldInForce(
                    reason="MENTAL_HEALTH_CRISIS",
                    first_day=self.mental_health_crisis_from,
                    until=self.mental_health_crisis_until,
                )
            )
        return tuple(holds)


class PendingContact(Record):
    """A contact still to make: channels tried in ladder order; when every channel is blocked
    for now, wait until the earliest one is allowed again (at most a few times)."""

    template: str
    stage: CaseStage
    tried: list[str] = Field(default_factory=list)
    retry_at: datetime | None = None
    earliest_allowed: datetime | None = None
    deferrals: int = 0


class InfoRound(Record):
    """Collecting the borrower's situation: reminders and the deadline count from here."""

    requested_at: datetime
    reminders_sent: int = 0
    trigger: ReassessmentTrigger | None = None
    """Why information is asked again (a broken plan), carried to the assessment."""


class AssessRound(Record):
    trigger: ReassessmentTrigger | None = None
    policy_loaded: bool = False
    loan_read: bool = False


class ApprovalRound(Record):
    option_ids: list[str]
    required: ApprovalAuthority
    requested_at: datetime
    escalations: int = 0


class OfferRound(Record):
    opened_at: datetime
    reminders_sent: int = 0


class CompactSchedule(Record):
    """A repayment schedule as integers — minor units and day ordinals — because a cached case
    keeps its agreement for years: a 360-instalment mortgage takes a few KiB this way and about a
    megabyte as models. ``expand()`` gives back exactly the schedule it was made from."""

    currency: Currency
    balance: int
    capitalised_interest: int = 0
    due: tuple[int, ...]
    principal: tuple[int, ...]
    interest: tuple[int, ...]

    @classmethod
    def of(cls, schedule: RepaymentSchedule) -> CompactSchedule:
        scale = Decimal(10) ** MINOR_UNITS[schedule.currency]
        return cls(
            currency=schedule.currency,
            balance=int(schedule.balance * scale),
            capitalised_interest=int(schedule.capitalised_interest * scale),
            due=tuple(i.due_date.toordinal() for i in schedule.instalments),
            principal=tuple(int(i.principal * scale) for i in schedule.instalments),
            interest=tuple(int(i.interest * scale) for i in schedule.instalments),
        )

    def __len__(self) -> int:
        return len(self.due)

    def due_date(self, index: int) -> date:
        return date.fromordinal(self.due[index])

    def amount(self, index: int) -> Decimal:
        return self._money(self.principal[index] + self.interest[index])

    @property
    def total_payable(self) -> Decimal:
        return self._money(sum(self.principal) + sum(self.interest))

    def expand(self) -> RepaymentSchedule:
        return RepaymentSchedule(
            currency=self.currency,
            balance=self._money(self.balance),
            capitalised_interest=self._money(self.capitalised_interest),
            instalments=tuple(
                Instalment(
                    number=index + 1,
                    due_date=self.due_date(index),
                    principal=self._money(principal),
                    interest=self._money(interest),
                    amount=self._money(principal + interest),
                )
                for index, (principal, interest) in enumerate(
                    zip(self.principal, self.interest, strict=True)
                )
            ),
        )

    def _money(self, minor: int) -> Decimal:
        return Decimal(minor).scaleb(-MINOR_UNITS[self.currency])


class StoredAgreement(Record):
    """An ``Agreement`` with its schedule kept compact; ``expand()`` is the agreement itself."""

    agreement_id: str
    case_id: str
    policy_version: str
    option_id: str
    terms: PlanTerms
    schedule: CompactSchedule
    required_authority: ApprovalAuthority
    issued_at: datetime
    expires_at: datetime
    default_after_missed_instalments: int

    @classmethod
    def of(cls, agreement: Agreement) -> StoredAgreement:
        fields = {name: getattr(agreement, name) for name in cls.model_fields}
        return cls(**{**fields, "schedule": CompactSchedule.of(agreement.schedule)})

    def expand(self) -> Agreement:
        fields = {name: getattr(self, name) for name in type(self).model_fields}
        return Agreement(**{**fields, "schedule": self.schedule.expand()})


class SignatureRound(Record):
    option_id: str
    loan_read: bool = False
    agreement: StoredAgreement | None = None
    """Issued for this round: exactly what was offered, or the case re-proposes."""
    envelope_id: str | None = None
    sent_at: datetime | None = None
    reminders_sent: int = 0
    claimed: bool = False
    """The provider told us the borrower signed: confirm it before acting on it."""
    signed_at: datetime | None = None


class Tracking(Record):
    """The signed plan's instalments as the ledger shows them."""

    statuses: list[InstalmentStatus]
    paid_at: dict[int, datetime] = Field(default_factory=dict)
    """Instalment number → when the ledger first covered it."""
    next_index: int = 0
    """The instalment whose checkpoint comes next (== len(statuses) once past the last)."""
    overrun_checkpoints: int = 0
    """Checkpoints after the last due date while arrears remain."""
    schedule_shift: timedelta = timedelta(0)
    """Time the plan spent on hold: due dates move by it."""
    consecutive_missed: int = 0
    next_reassessment_at: datetime
    ledger_due: bool = False
    """A checkpoint passed: read the ledger."""
    restructure_ref: str = ""
    paid_total: Decimal = Decimal(0)
    """Paid under the plan, as the ledger said when last read (at ``ledger_read_at``)."""
    ledger_read_at: datetime | None = None


class CaseState(Record):
    case_id: str
    loan_id: str
    delinquent_since: date
    opened_at: datetime | None = None
    clock: PolicyClock | None = None
    """Set only for a simulation's compressed time; None is the server's clock."""
    run_count: int = 1
    round: int = 0
    """Bumped whenever the case changes course: a result of work asked for in an earlier round
    is stale and ignored."""

    stage: CaseStage = CaseStage.COLLECT_INFO
    policy_version: str | None = None
    contact_rules_version: str | None = None

    # What core banking and the borrower told us.
    loan: LoanOverdue | None = None
    loan_confirmed: bool = False
    """Core banking confirmed the loan at opening."""
    credit: CreditRecord | None = None
    loan_status: LoanStatusKind | None = None
    profile: FinancialProfile | None = None
    profile_is_current: bool = False
    """The profile was given in the current information round (silence is information)."""
    applied_event_ids: list[str] = Field(default_factory=list)
    payments: list[PaymentNote] = Field(default_factory=list)
    """Recent payments reported on Kafka (``engine.balance`` counts those the loan position
    or the ledger does not cover yet)."""

    # Where each stage is.
    info: InfoRound | None = None
    assessment: Assessment | None = None
    assess_round: AssessRound | None = None
    proposal: PlanProposal | None = None
    approval: ApprovalRound | None = None
    approved: dict[str, str] = Field(default_factory=dict)
    """Option id → who approved it (``policy`` for automatic)."""
    withdrawn: list[str] = Field(default_factory=list)
    offer: OfferRound | None = None
    signature: SignatureRound | None = None
    agreement: StoredAgreement | None = None
    """The agreement in force (signed and applied)."""
    tracking: Tracking | None = None
    envelopes_to_void: list[str] = Field(default_factory=list)

    # Counters that rules and the assessment read.
    counter_rounds: int = 0
    reproposal_rounds: int = 0
    agreements_issued: int = 0
    broken_plans: int = 0
    instalments_missed: int = 0
    contacts_made: int = 0
    conversations: int = 0
    published_count: int = 0

    # Contact, holds, people.
    time_zone: str | None = None
    """The borrower's IANA zone (not personal data), from core banking at opening: their
    calendar days decide due dates, deadlines and quiet hours."""
    borrower_calendar: bool = True
    """This run reads the borrower's time zone and counts deadlines and moratoria in their
    calendar days. The workflow sets it first thing in every run (patch ``borrower-time-zone``):
    False only while replaying a run recorded before, which keeps the commands it made (no zone
    read; deadlines N x 24 h from their anchor; a breathing space N x 24 h from its entry)."""
    contact_log: list[ContactAttempt] = Field(default_factory=list)
    contact_seq: int = 0
    """Contact commands answered so far: each attempt id is new."""
    interactions_to_record: list[Interaction] = Field(default_factory=list)
    """Contacts staff recorded, not yet in the borrower's contact ledger."""
    pending_contact: PendingContact | None = None
    holds: Holds = Field(default_factory=Holds)
    attention: Attention | None = None
    assigned_to: str | None = None

    outbox: list[CaseEvent] = Field(default_factory=list)
    """Case events not yet published: updates never wait on Kafka."""

    # The audit trail.
    stages: list[StageChange] = Field(default_factory=list)
    decisions: list[DecisionRecord] = Field(default_factory=list)
    notes: list[NoteRecord] = Field(default_factory=list)

    outcome: CaseOutcome | None = None
    outcome_reasons: list[str] = Field(default_factory=list)
    closed_at: datetime | None = None

    @property
    def closed(self) -> bool:
        return self.outcome is not None


class CaseStart(BaseModel):
    """The case workflow's one argument. ``carried`` is set only by continue-as-new: the next
    run starts from the whole state (and loads the policy in force for its next decisions)."""

    model_config = ConfigDict(extra="ignore")

    loan_id: str
    delinquent_since: date
    continue_as_new_after_events: int = 5_000
    """Safety margin under Temporal's 50k-event limit; a 36-month plan stays well below it."""
    carried: CaseState | None = None
