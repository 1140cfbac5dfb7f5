"""E-signature over HTTP: envelopes (one per agreement), their status, voiding; the completion
callback the provider posts to Accord's webhook receiver."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

SIGNATURE_HEADER = "X-Signature"
"""``sha256=<hex HMAC-SHA256 of the raw body>`` under the shared webhook secret."""


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class DocumentSection(_Body):
    heading: Annotated[str, Field(max_length=200)]
    lines: Annotated[tuple[str, ...], Field(max_length=700)]


class Document(_Body):
    """What the signer reads and signs (rendered by the provider's signing page)."""

    title: Annotated[str, Field(min_length=1, max_length=200)]
    sections: Annotated[tuple[DocumentSection, ...], Field(max_length=50)]


class EnvelopeRequest(_Body):
    """Open an envelope; sent with ``Idempotency-Key: <reference>`` (the agreement id)."""

    reference: Annotated[str, Field(min_length=1, max_length=128)]
    """The agreement id: one envelope per agreement."""
    signer_id: Annotated[str, Field(min_length=1, max_length=64)]
    """An opaque borrower id, never a name."""
    case_id: Annotated[str, Field(min_length=1, max_length=160)]
    """Returned in the callback so the receiver can tell the case."""
    document: Document
    expires_at: AwareDatetime
    callback_url: Annotated[str, Field(min_length=1, max_length=2000)]


class EnvelopeStateName(StrEnum):
    SENT = "sent"
    SIGNED = "signed"
    DECLINED = "declined"
    VOIDED = "voided"
    EXPIRED = "expired"


class Envelope(_Body):
    envelope_id: str
    reference: str
    signer_id: str
    case_id: str
    state: EnvelopeStateName
    created_at: AwareDatetime
    expires_at: AwareDatetime
    signed_at: AwareDatetime | None = None
    declined_at: AwareDatetime | None = None
    voided_at: AwareDatetime | None = None
    signing_url: str
    """The page where the signer reads, signs or declines (carries a per-envelope token)."""


class EnvelopeEvent(_Body):
    """The provider's callback when the signer acted."""

    event_id: str
    type: Literal["envelope.signed", "envelope.declined"]
    envelope_id: str
    reference: str
    case_id: str
    occurred_at: AwareDatetime
    signed_at: AwareDatetime | None = None


class WebhookReceipt(_Body):
    result: Literal["applied", "ignored"]
    detail: str = ""
