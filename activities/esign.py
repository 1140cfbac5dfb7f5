"""E-signature: send an agreement for signing, read its status, void it (the provider's
callback reaches the case through ``services.webhooks``; the status read confirms it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from pydantic import AwareDatetime, BaseModel, ConfigDict

from activities.faults import Faults, PermanentRejection
from schemas.plan import Agreement


class EnvelopeState(StrEnum):
    SENT = "sent"
    SIGNED = "signed"
    DECLINED = "declined"
    VOIDED = "voided"
    EXPIRED = "expired"


class EnvelopeStatus(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    envelope_id: str
    state: EnvelopeState
    signed_at: AwareDatetime | None = None


class ESignature(Protocol):
    async def send(self, agreement: Agreement, borrower_id: str) -> str:
        """Returns the envelope id; idempotent by ``agreement.agreement_id``."""
        ...

    async def status(self, envelope_id: str) -> EnvelopeStatus: ...

    async def void(self, envelope_id: str) -> EnvelopeStatus:
        """Withdraw an unsigned envelope (idempotent). A signed one cannot be voided:
        ``PermanentRejection``; an expired or declined one stays as it is."""
        ...


def envelope_id_for(agreement_id: str) -> str:
    """The envelope ``ESignatureSimulator`` opens for an agreement."""
    return f"env-{agreement_id}"


@dataclass
class ESignatureSimulator:
    envelopes: dict[str, EnvelopeStatus] = field(default_factory=dict)
    by_agreement: dict[str, str] = field(default_factory=dict)
    faults: Faults = field(default_factory=Faults)

    async def send(self, agreement: Agreement, borrower_id: str) -> str:
        self.faults.before("esign_send")
        envelope_id = self.by_agreement.get(agreement.agreement_id)
        if envelope_id is None:
            envelope_id = envelope_id_for(agreement.agreement_id)
            self.by_agreement[agreement.agreement_id] = envelope_id
            self.envelopes[envelope_id] = EnvelopeStatus(
                envelope_id=envelope_id, state=EnvelopeState.SENT
            )
        return envelope_id

    async def status(self, envelope_id: str) -> EnvelopeStatus:
        self.faults.before("esign_status")
        if envelope_id not in self.envelopes:
            raise PermanentRejection(f"esign_status: unknown envelope {envelope_id}")
        return self.envelopes[envelope_id]

    async def void(self, envelope_id: str) -> EnvelopeStatus:
        self.faults.before("esign_void")
        status = await self.status(envelope_id)
        if status.state is EnvelopeState.SIGNED:
            raise PermanentRejection(f"esign_void: {envelope_id} is already signed")
        if status.state is EnvelopeState.SENT:
            status = EnvelopeStatus(envelope_id=envelope_id, state=EnvelopeState.VOIDED)
            self.envelopes[envelope_id] = status
        return status

    # What the borrower does in the provider's page.
    def borrower_signs(self, envelope_id: str, signed_at: AwareDatetime) -> None:
        self.envelopes[envelope_id] = EnvelopeStatus(
            envelope_id=envelope_id, state=EnvelopeState.SIGNED, signed_at=signed_at
        )
