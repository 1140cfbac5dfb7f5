"""What the case machine asks the workflow to do next (``engine.planner.next_command``).

The workflow carries out one command at a time and feeds its result back as a message
(``engine.messages``). Commands that ask for a result carry the ``round`` they were asked in:
if the case changed course meanwhile, the result is stale and the machine ignores it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from decisions.contact_ledger import Interaction
from schemas.assessment import Assessment, CreditRecord, Engagement, FinancialProfile
from schemas.case import CheckpointKind
from schemas.contact import ContactChannel, ContactHolds
from schemas.events import LoanOverdue
from schemas.outbound import CaseEvent
from schemas.plan import Agreement, PlanOption


@dataclass(frozen=True)
class Command:
    round: int


# --- core banking, e-signature, contact (activities) -----------------------------------------


@dataclass(frozen=True)
class LoadPolicy(Command):
    """The policy in force now for the loan's portfolio: at opening and again before every
    assessment, so a policy change applies to the next decision (each records its version)."""

    portfolio: str | None


@dataclass(frozen=True)
class ReadLoan(Command):
    reported: LoanOverdue | None
    """The latest overdue event the case saw (a simulator may answer with it)."""


@dataclass(frozen=True)
class ReadCredit(Command):
    borrower_id: str


@dataclass(frozen=True)
class ReadTimeZone(Command):
    """The borrower's time zone, from their contact details (only the zone comes back)."""

    borrower_id: str


@dataclass(frozen=True)
class SendForSignature(Command):
    agreement: Agreement
    borrower_id: str


@dataclass(frozen=True)
class CheckSignature(Command):
    envelope_id: str


@dataclass(frozen=True)
class VoidEnvelope(Command):
    envelope_id: str


@dataclass(frozen=True)
class ApplyRestructure(Command):
    agreement: Agreement
    applied_at: datetime


@dataclass(frozen=True)
class ReadLedger(Command):
    since: date


@dataclass(frozen=True)
class Contact(Command):
    """One attempt, if the borrower's contact ledger grants it."""

    channel: ContactChannel
    template: str
    attempt_id: str
    """New for every attempt: the ledger's and the gateway's idempotency key."""
    holds: ContactHolds
    borrower_id: str
    loan_id: str


@dataclass(frozen=True)
class RecordInteraction(Command):
    """Put a contact staff recorded into the borrower's contact ledger."""

    borrower_id: str
    interaction: Interaction


@dataclass(frozen=True)
class Publish(Command):
    events: tuple[CaseEvent, ...]


# --- the decision core (local activities) ----------------------------------------------------


@dataclass(frozen=True)
class Assess(Command):
    loan: LoanOverdue
    profile: FinancialProfile | None
    credit: CreditRecord
    engagement: Engagement


@dataclass(frozen=True)
class Propose(Command):
    loan: LoanOverdue
    assessment: Assessment
    first_due: date


@dataclass(frozen=True)
class IssueAgreement(Command):
    agreement_id: str
    option: PlanOption
    loan: LoanOverdue
    issued_at: datetime
    time_zone: str
    """The borrower's: the first due date and the expiry are their calendar days."""


# --- the clock and the end -------------------------------------------------------------------


@dataclass(frozen=True)
class Wait(Command):
    """Nothing to do until ``until`` (None: until a message arrives). ``kind`` names the
    checkpoint, shown in the case view and the ``NextCheckpointAt`` search attribute."""

    until: datetime | None
    kind: CheckpointKind | None


@dataclass(frozen=True)
class Finish(Command):
    """The case is closed and everything is published."""


CALLS_THAT_WAIT_FOR_A_HUMAN_ON_FAILURE = (
    LoadPolicy,
    ReadLoan,
    ReadCredit,
    ReadTimeZone,
    SendForSignature,
    CheckSignature,
    ApplyRestructure,
    ReadLedger,
    Assess,
    Propose,
    IssueAgreement,
)
"""A call that failed for good (after its bounded retries) puts the case on hold for a human;
a failed contact or void is recorded and the case carries on."""
