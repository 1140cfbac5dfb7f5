"""The external systems over HTTP: the adapters a bank points at its own core banking,
e-signature provider and contact gateway (or the embedded stand-ins in ``services/``).

Contracts: ``schemas/http`` and the OpenAPI documents in ``docs/openapi/``. Idempotency keys:
a restructure by agreement id, an envelope by agreement id, a contact by the case's attempt id.
"""

from __future__ import annotations

import asyncio
import time
from datetime import date
from decimal import Decimal

import httpx
from pydantic import AwareDatetime, TypeAdapter

from activities.contact_channels import ContactDetails
from activities.core_banking import LedgerPosition, RestructureReceipt
from activities.esign import EnvelopeState, EnvelopeStatus
from activities.faults import PermanentRejection, SystemUnavailable
from activities.http_client import ServiceClient
from schemas.assessment import CreditRecord
from schemas.contact import ContactChannel, ContactOutcome
from schemas.events import LoanOverdue
from schemas.http.contact import GatewayChannel, Message, MessageRequest, MessageStatus
from schemas.http.core_banking import (
    IDEMPOTENCY_HEADER,
    CustomerContactDetails,
    Restructure,
    RestructureInstruction,
    ScheduledInstalment,
)
from schemas.http.esign import Document, DocumentSection, Envelope, EnvelopeRequest
from schemas.plan import Agreement
from settings import ContactGatewaySettings, CoreBankingSettings, ESignSettings

ENVELOPES = TypeAdapter(list[Envelope])


def loan_id_of(case_id: str) -> str:
    """``case-<loan_id>-<YYYYMMDD>`` (``schemas.events.case_id``) -> ``<loan_id>``."""
    return case_id.removeprefix("case-").rpartition("-")[0]


class CoreBankingHttp:
    """``activities.core_banking.CoreBanking`` over HTTP."""

    def __init__(
        self, cfg: CoreBankingSettings, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.http = ServiceClient("core banking", cfg, transport)

    async def read_loan(self, loan_id: str, reported: LoanOverdue | None) -> LoanOverdue:
        # ``reported`` is the case's own copy: the bank's loan book is the truth.
        return await self.http.call("read_loan", "GET", f"/v1/loans/{loan_id}", LoanOverdue)

    async def read_credit_record(self, borrower_id: str) -> CreditRecord:
        return await self.http.call(
            "read_credit_record", "GET", f"/v1/customers/{borrower_id}/credit-record", CreditRecord
        )

    async def read_ledger(self, loan_id: str, since: date) -> LedgerPosition:
        return await self.http.call(
            "read_ledger",
            "GET",
            f"/v1/loans/{loan_id}/ledger",
            LedgerPosition,
            params={"since": since.isoformat()},
        )

    async def apply_restructure(
        self, agreement: Agreement, applied_at: AwareDatetime
    ) -> RestructureReceipt:
        instruction = RestructureInstruction(
            agreement_id=agreement.agreement_id,
            case_id=agreement.case_id,
            plan_type="+".join(lever.value for lever in agreement.terms.levers),
            currency=agreement.schedule.currency,
            instalments=tuple(
                ScheduledInstalment(number=i.number, due_date=i.due_date, amount=i.amount)
                for i in agreement.schedule.instalments
            ),
            signed_at=applied_at,
        )
        restructure = await self.http.call(
            "apply_restructure",
            "POST",
            f"/v1/loans/{loan_id_of(agreement.case_id)}/restructures",
            Restructure,
            body=instruction,
            headers={IDEMPOTENCY_HEADER: agreement.agreement_id},
        )
        return RestructureReceipt(
            agreement_id=restructure.agreement_id,
            restructure_ref=restructure.restructure_ref,
            applied_at=restructure.applied_at,
        )

    async def aclose(self) -> None:
        await self.http.aclose()


class ContactDirectoryHttp:
    """``ContactDirectory`` from core banking's customer records."""

    def __init__(
        self, cfg: CoreBankingSettings, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.http = ServiceClient("core banking", cfg, transport)

    async def lookup(self, borrower_id: str) -> ContactDetails:
        details = await self.http.call(
            "read_contact_details",
            "GET",
            f"/v1/customers/{borrower_id}/contact-details",
            CustomerContactDetails,
        )
        return ContactDetails(phone=details.phone, email=details.email, time_zone=details.time_zone)

    async def aclose(self) -> None:
        await self.http.aclose()


def agreement_document(agreement: Agreement) -> Document:
    """What the borrower reads on the provider's signing page."""
    currency = agreement.schedule.currency
    terms = agreement.terms
    total = sum((i.amount for i in agreement.schedule.instalments), Decimal(0))
    plan = [
        f"Plan: {', '.join(lever.value.replace('_', ' ') for lever in terms.levers)}",
        f"Instalments: {len(agreement.schedule.instalments)} monthly",
        f"Annual interest rate: {terms.annual_interest_rate}",
        f"Total payable: {total} {currency}",
    ]
    if terms.waived:
        plan.append(f"Waived: {terms.waived} {currency}")
    schedule = [
        f"{i.number}. {i.due_date.isoformat()}: {i.amount} {currency}"
        for i in agreement.schedule.instalments
    ]
    clause = [
        f"Missing {agreement.default_after_missed_instalments} consecutive instalments ends "
        "this agreement.",
    ]
    return Document(
        title=f"Repayment agreement {agreement.agreement_id}",
        sections=(
            DocumentSection(heading="The plan", lines=tuple(plan)),
            DocumentSection(heading="Schedule", lines=tuple(schedule)),
            DocumentSection(heading="Default", lines=tuple(clause)),
        ),
    )


_STATES = {
    "sent": EnvelopeState.SENT,
    "signed": EnvelopeState.SIGNED,
    "declined": EnvelopeState.DECLINED,
    "voided": EnvelopeState.VOIDED,
    "expired": EnvelopeState.EXPIRED,
}


def _status(envelope: Envelope) -> EnvelopeStatus:
    return EnvelopeStatus(
        envelope_id=envelope.envelope_id,
        state=_STATES[envelope.state.value],
        signed_at=envelope.signed_at,
    )


class ESignatureHttp:
    """``activities.esign.ESignature`` over HTTP; completions arrive by webhook."""

    def __init__(
        self,
        cfg: ESignSettings,
        callback_url: str,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.http = ServiceClient("e-signature", cfg, transport)
        self.callback_url = callback_url

    async def send(self, agreement: Agreement, borrower_id: str) -> str:
        request = EnvelopeRequest(
            reference=agreement.agreement_id,
            signer_id=borrower_id,
            case_id=agreement.case_id,
            document=agreement_document(agreement),
            expires_at=agreement.expires_at,
            callback_url=self.callback_url,
        )
        envelope = await self.http.call(
            "esign_send",
            "POST",
            "/v1/envelopes",
            Envelope,
            body=request,
            headers={IDEMPOTENCY_HEADER: agreement.agreement_id},
        )
        return envelope.envelope_id

    async def status(self, envelope_id: str) -> EnvelopeStatus:
        envelope = await self.http.call(
            "esign_status", "GET", f"/v1/envelopes/{envelope_id}", Envelope
        )
        return _status(envelope)

    async def void(self, envelope_id: str) -> EnvelopeStatus:
        envelope = await self.http.call(
            "esign_void", "POST", f"/v1/envelopes/{envelope_id}/void", Envelope
        )
        return _status(envelope)

    async def aclose(self) -> None:
        await self.http.aclose()


_OUTCOMES = {
    MessageStatus.DELIVERED: ContactOutcome.DELIVERED,
    MessageStatus.ANSWERED: ContactOutcome.ANSWERED,
    MessageStatus.UNANSWERED: ContactOutcome.UNANSWERED,
    MessageStatus.FAILED: ContactOutcome.FAILED,
}


class ContactGatewayHttp:
    """``ContactGateway`` over HTTP: send, then poll the message until its status is final."""

    def __init__(
        self, cfg: ContactGatewaySettings, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.http = ServiceClient("contact gateway", cfg, transport)
        self.status_wait = cfg.status_wait_seconds
        self.poll = cfg.status_poll_seconds

    async def send(
        self, channel: ContactChannel, address: str, template: str, idempotency_key: str
    ) -> ContactOutcome:
        if channel is ContactChannel.LETTER:
            raise PermanentRejection("send_letter: letters are not sent through the gateway")
        message = await self.http.call(
            f"send_{channel.value}",
            "POST",
            "/v1/messages",
            Message,
            body=MessageRequest(
                channel=GatewayChannel(channel.value), to=address, template=template
            ),
            headers={"Idempotency-Key": idempotency_key},
        )
        deadline = time.monotonic() + self.status_wait
        while not message.status.final:
            if time.monotonic() >= deadline:
                # Sent, status unknown: a retry with the same key reads it again, sends nothing.
                raise SystemUnavailable(
                    f"send_{channel.value}: still {message.status.value} after "
                    f"{self.status_wait:g}s"
                )
            await asyncio.sleep(self.poll)
            message = await self.http.call(
                "read_message", "GET", f"/v1/messages/{message.message_id}", Message
            )
        return _OUTCOMES[message.status]

    async def aclose(self) -> None:
        await self.http.aclose()
