"""The contact gateway over HTTP: SMS, e-mail and phone calls, each with a delivery or answer
status that the sender polls."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.contact import ContactChannel


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class GatewayChannel(StrEnum):
    """What a gateway sends (letters go by post, not through it)."""

    SMS = "sms"
    EMAIL = "email"
    PHONE = "phone"


class MessageRequest(_Body):
    """Send one message or place one call; sent with ``Idempotency-Key: <attempt id>``."""

    channel: GatewayChannel
    to: Annotated[str, Field(min_length=1, max_length=320)]
    template: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class MessageStatus(StrEnum):
    QUEUED = "queued"  # SMS / e-mail on its way
    RINGING = "ringing"  # a call being placed
    DELIVERED = "delivered"
    ANSWERED = "answered"
    UNANSWERED = "unanswered"
    FAILED = "failed"

    @property
    def final(self) -> bool:
        return self not in (MessageStatus.QUEUED, MessageStatus.RINGING)


class Message(_Body):
    message_id: str
    idempotency_key: str
    channel: ContactChannel
    to: str
    template: str
    status: MessageStatus
    created_at: AwareDatetime
    updated_at: AwareDatetime
