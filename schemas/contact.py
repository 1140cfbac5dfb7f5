"""Contact attempts and the contact-rule decision (DESIGN §5)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import AwareDatetime

from schemas.assessment import Contract, ReasonCode


class ContactChannel(StrEnum):
    SMS = "sms"
    EMAIL = "email"
    PHONE = "phone"
    LETTER = "letter"


class ContactOutcome(StrEnum):
    ANSWERED = "answered"
    """A conversation with the borrower took place (or they replied)."""
    UNANSWERED = "unanswered"
    DELIVERED = "delivered"
    FAILED = "failed"


class Recipient(StrEnum):
    BORROWER = "borrower"
    THIRD_PARTY = "third_party"
    """Anyone else (family, employer, references): never told about the debt."""


class ContactAttempt(Contract):
    channel: ContactChannel
    at: AwareDatetime
    outcome: ContactOutcome
    recipient: Recipient = Recipient.BORROWER


class ContactHolds(Contract):
    """The parts of the case state that stop contact."""

    disputed: bool = False
    paused: bool = False
    paused_until: AwareDatetime | None = None
    """None while paused: until a human resumes the case."""
    breathing_space_until: AwareDatetime | None = None


class ContactDecision(Contract):
    allowed: bool
    reason: ReasonCode | None = None
    """Why not (None when allowed)."""
    next_allowed_at: AwareDatetime | None = None
    """When it will next be allowed; None when allowed now or when only a human can lift it."""
