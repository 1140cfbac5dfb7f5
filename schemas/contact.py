"""Contact attempts, conversations and the contact-rule decision (DESIGN §5)."""

from __future__ import annotations

from pydantic import AwareDatetime

from schemas.assessment import Contract, ReasonCode
from schemas.channels import ContactChannel, ContactOutcome, Direction, Recipient

__all__ = [
    "ContactAttempt",
    "ContactChannel",
    "ContactDecision",
    "ContactHolds",
    "ContactOutcome",
    "Direction",
    "Recipient",
]


class ContactAttempt(Contract):
    """One contact with the borrower, either way: an outbound attempt (its outcome once known),
    an inbound call, a conversation (``ANSWERED``), a message delivered."""

    channel: ContactChannel
    at: AwareDatetime
    outcome: ContactOutcome
    recipient: Recipient = Recipient.BORROWER
    direction: Direction = Direction.OUTBOUND
    debt: str | None = None
    """The loan it was about (None: the case's own loan)."""
    attempt_id: str | None = None
    """The attempt's key (the gateway's idempotency key) or the recorded interaction's id."""

    @property
    def conversation(self) -> bool:
        return self.outcome is ContactOutcome.ANSWERED


class ContactHolds(Contract):
    """The parts of the case state that stop contact."""

    disputed: bool = False
    paused: bool = False
    paused_until: AwareDatetime | None = None
    """None while paused: until a human resumes the case."""
    breathing_space_until: AwareDatetime | None = None
    mental_health_crisis: bool = False
    """A mental-health crisis moratorium is in force."""
    mental_health_crisis_until: AwareDatetime | None = None
    """None while the treatment goes on: the moratorium's end is not known yet."""


class ContactDecision(Contract):
    allowed: bool
    reason: ReasonCode | None = None
    """Why not (None when allowed)."""
    next_allowed_at: AwareDatetime | None = None
    """When it will next be allowed; None when allowed now or when only a human can lift it."""
