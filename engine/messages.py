"""What the workflow tells the case machine, besides inbound events and people's actions:
the results of the commands it carried out, and that time passed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from decisions.policy import Policy
from schemas.assessment import Assessment, CreditRecord
from schemas.contact import ContactAttempt, ContactDecision
from schemas.events import LoanOverdue
from schemas.plan import Agreement, PlanProposal


@dataclass(frozen=True)
class Result:
    round: int
    """The round of the command this answers."""


@dataclass(frozen=True)
class PolicyLoaded(Result):
    policy: Policy
    """The workflow keeps it (shared by version); the state records only its version."""
    version: str
    contact_rules_version: str
    time_scale: int


@dataclass(frozen=True)
class LoanRead(Result):
    loan: LoanOverdue


@dataclass(frozen=True)
class CreditRead(Result):
    credit: CreditRecord


@dataclass(frozen=True)
class TimeZoneRead(Result):
    time_zone: str


@dataclass(frozen=True)
class InteractionRecorded(Result):
    interaction_id: str


@dataclass(frozen=True)
class Assessed(Result):
    assessment: Assessment


@dataclass(frozen=True)
class Proposed(Result):
    proposal: PlanProposal


@dataclass(frozen=True)
class AgreementIssued(Result):
    agreement: Agreement


@dataclass(frozen=True)
class AgreementNotIssued(Result):
    """What was offered can no longer be signed as offered (the loan moved since)."""

    reasons: tuple[str, ...]


@dataclass(frozen=True)
class EnvelopeSent(Result):
    envelope_id: str


@dataclass(frozen=True)
class SignatureChecked(Result):
    state: str
    """The provider's envelope state: sent, signed, declined or voided."""
    signed_at: datetime | None


@dataclass(frozen=True)
class EnvelopeVoided(Result):
    envelope_id: str


@dataclass(frozen=True)
class RestructureApplied(Result):
    restructure_ref: str


@dataclass(frozen=True)
class LedgerRead(Result):
    paid_total: Decimal
    last_paid_at: datetime | None


@dataclass(frozen=True)
class ContactTried(Result):
    channel: str
    decision: ContactDecision
    attempt: ContactAttempt | None
    """None when the rules blocked the channel for now."""


@dataclass(frozen=True)
class ContactFailed(Result):
    """The channel failed (after the contact's retries): recorded, the next channel is tried."""

    channel: str
    detail: str


@dataclass(frozen=True)
class CallFailed(Result):
    """A command failed for good: its bounded retries ran out or the system refused it."""

    call: str
    reason: str
    """A reason code: ``DECISION_FAILED``, ``SYSTEM_REJECTED``, ``SYSTEM_UNAVAILABLE``,
    ``POLICY_ERROR``."""
    detail: str


@dataclass(frozen=True)
class Published(Result):
    count: int


@dataclass(frozen=True)
class Tick:
    """Time passed: fire whatever is due."""
