"""The kinds of contact: channel, outcome, direction, recipient. No dependencies, so the event
contracts (``schemas.events``) and the contact models (``schemas.contact``) can both use them."""

from __future__ import annotations

from enum import StrEnum


class ContactChannel(StrEnum):
    SMS = "sms"
    EMAIL = "email"
    PHONE = "phone"
    LETTER = "letter"


class ContactOutcome(StrEnum):
    ANSWERED = "answered"
    """A conversation with the borrower took place (or they replied)."""
    UNANSWERED = "unanswered"
    """The call rang (or reached voicemail) and nobody talked."""
    DELIVERED = "delivered"
    FAILED = "failed"
    """Never reached the borrower's number or address (busy, not in service, bounced)."""
    UNKNOWN = "unknown"
    """Placed, outcome not (yet) known: the gateway did not say. Counted as made, unanswered."""


class Direction(StrEnum):
    OUTBOUND = "outbound"
    """We contacted the borrower (Accord or an agent)."""
    INBOUND = "inbound"
    """The borrower contacted us (called, wrote)."""


class Recipient(StrEnum):
    BORROWER = "borrower"
    THIRD_PARTY = "third_party"
    """Anyone else (family, employer, references): never told about the debt."""
