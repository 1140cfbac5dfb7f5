"""The case workflow's activities: every piece of I/O, behind the small interfaces of this
package. One instance holds the implementations (simulators in tests and the embedded stack,
real clients in production); its bound methods are registered with the worker.

Errors: ``SystemUnavailable`` stays retryable (the caller's retry policy waits it out);
``PermanentRejection`` becomes a non-retryable ``ApplicationError`` of the same type name.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, model_validator
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contact_channels import ContactDirectory, ContactGateway
from activities.contact_ledger import ContactLedger, TemporalContactLedger
from activities.core_banking import CoreBanking, LedgerPosition, RestructureReceipt
from activities.esign import EnvelopeStatus, ESignature
from activities.faults import PermanentRejection, SystemUnavailable
from activities.publisher import CaseEventPublisher
from decisions.clock import PolicyClock
from decisions.contact_ledger import AttemptRequest, Interaction, OutcomeReport
from decisions.local_days import is_zone
from decisions.policy import ContactRules, Policy, PolicyError
from decisions.portfolios import PolicyRegistry
from schemas.assessment import CreditRecord
from schemas.contact import (
    ContactAttempt,
    ContactChannel,
    ContactDecision,
    ContactHolds,
    ContactOutcome,
)
from schemas.events import LoanOverdue, loan_id_of_case
from schemas.outbound import CaseEvent
from schemas.plan import Agreement

T = TypeVar("T")
Clock = Callable[[], Awaitable[datetime]]


async def system_clock() -> datetime:
    return datetime.now(UTC)


class _Request(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class LoanRequest(_Request):
    loan_id: str
    reported: LoanOverdue | None = None


class LedgerRequest(_Request):
    loan_id: str
    since: date


class RestructureRequest(_Request):
    agreement: Agreement
    applied_at: AwareDatetime


class ContactRequest(_Request):
    case_id: str
    borrower_id: str
    loan_id: str
    channel: ContactChannel
    template: str
    """A message template name; the text lives with the channel, not in history."""
    attempt_id: str
    """New for each attempt: the contact ledger's and the gateway's idempotency key."""
    holds: ContactHolds
    rules: ContactRules
    policy_clock: PolicyClock | None = None
    """A compressed case's clock: the rules are judged on its time, not the outside world's."""

    @model_validator(mode="before")
    @classmethod
    def _scheduled_before_the_ledger(cls, data: Any) -> Any:
        """A request a case scheduled before cases kept a contact ledger (still retried after a
        deploy) named its attempt ``idempotency_key``, carried the case's own contact log (now
        ignored: the ledger judges) and no loan id: the loan is the case id's."""
        if not isinstance(data, dict) or "attempt_id" in data:
            return data
        upgraded = dict(data)
        if "idempotency_key" in upgraded:
            upgraded["attempt_id"] = upgraded.pop("idempotency_key")
        if "loan_id" not in upgraded and isinstance(upgraded.get("case_id"), str):
            upgraded["loan_id"] = loan_id_of_case(upgraded["case_id"])
        return upgraded


class RecordContactRequest(_Request):
    borrower_id: str
    interaction: Interaction


class ContactResult(_Request):
    decision: ContactDecision
    """Checked before the attempt; an attempt is only made when allowed."""
    attempt: ContactAttempt | None = None


class SignatureRequest(_Request):
    agreement: Agreement
    borrower_id: str


class PublishRequest(_Request):
    events: list[CaseEvent]
    """In order; consumers de-duplicate a re-published event by its deterministic id."""


async def _translated(call: Awaitable[T]) -> T:
    try:
        return await call
    except PermanentRejection as error:
        raise ApplicationError(str(error), type="PermanentRejection", non_retryable=True) from None
    except SystemUnavailable as error:
        raise ApplicationError(str(error), type="SystemUnavailable") from None


@dataclass
class CaseActivities:
    core_banking: CoreBanking
    directory: ContactDirectory
    gateway: ContactGateway
    esign: ESignature
    publisher: CaseEventPublisher
    policy_file: Path | None = None
    """The default policy (None: the bundled one); ``policies`` overrides it per portfolio."""
    policies: PolicyRegistry | None = None
    clock: Clock = field(default=system_clock)
    """Time as the outside world sees it; the contact rules are checked against it."""
    ledger: ContactLedger = field(default_factory=TemporalContactLedger)
    """The borrower's contact ledger: grants every attempt (the ledger workflows on this
    worker's task queue, through this worker's client)."""

    @activity.defn
    async def load_policy(self, portfolio: str | None = None) -> Policy:
        """The policy of the loan's portfolio (None: the default policy)."""
        registry = self.policies or PolicyRegistry(default=self.policy_file)
        try:
            return registry.load(portfolio)
        except PolicyError as error:
            # A broken policy file will not fix itself by retrying; operations must act.
            raise ApplicationError(str(error), type="PolicyError", non_retryable=True) from None

    @activity.defn
    async def read_loan(self, request: LoanRequest) -> LoanOverdue:
        return await _translated(self.core_banking.read_loan(request.loan_id, request.reported))

    @activity.defn
    async def read_credit_record(self, borrower_id: str) -> CreditRecord:
        return await _translated(self.core_banking.read_credit_record(borrower_id))

    @activity.defn
    async def read_ledger(self, request: LedgerRequest) -> LedgerPosition:
        return await _translated(self.core_banking.read_ledger(request.loan_id, request.since))

    @activity.defn
    async def apply_restructure(self, request: RestructureRequest) -> RestructureReceipt:
        return await _translated(
            self.core_banking.apply_restructure(request.agreement, request.applied_at)
        )

    @activity.defn
    async def borrower_time_zone(self, borrower_id: str) -> str:
        """Only the zone leaves this activity: it is not personal data, the details are."""
        details = await _translated(self.directory.lookup(borrower_id))
        if not is_zone(details.time_zone):
            raise ApplicationError(
                f"borrower_time_zone: {details.time_zone!r} is not an IANA time zone",
                type="PermanentRejection",
                non_retryable=True,
            )
        return details.time_zone

    @activity.defn
    async def contact_borrower(self, request: ContactRequest) -> ContactResult:
        """Ask the borrower's contact ledger, and contact only if it grants the attempt. The
        ledger records the attempt when it grants it, so it counts even if what follows fails;
        the gateway's idempotency key is the attempt id, so a retry places no second call."""
        details = await _translated(self.directory.lookup(request.borrower_id))
        address = details.email if request.channel is ContactChannel.EMAIL else details.phone
        if address is None:
            raise ApplicationError(
                f"contact_borrower: no {request.channel.value} address on file",
                type="PermanentRejection",
                non_retryable=True,
            )
        now = await self.clock()
        if request.policy_clock is not None:
            now = request.policy_clock.policy_time(now)
        ask = AttemptRequest(
            attempt_id=request.attempt_id,
            case_id=request.case_id,
            debt=request.loan_id,
            channel=request.channel,
            at=now,
            time_zone=details.time_zone,
            holds=request.holds,
            rules=request.rules,
        )
        decision = await _translated(self.ledger.request(request.borrower_id, ask))
        if not decision.allowed:
            return ContactResult(decision=decision)
        try:
            outcome = await _translated(
                self.gateway.send(request.channel, address, request.template, request.attempt_id)
            )
        except ApplicationError as error:
            # Refused by the gateway: nothing reached the borrower. Otherwise placed or not, no
            # one knows: the ledger keeps the attempt as made (outcome unknown).
            if error.type == "PermanentRejection":
                await self._report(request, ContactOutcome.FAILED)
            raise
        await self._report(request, outcome)
        # Only the channel, time and outcome go back into the case: never the address.
        activity.logger.info(
            "contacted case=%s channel=%s outcome=%s",
            request.case_id,
            request.channel.value,
            outcome.value,
        )
        return ContactResult(
            decision=decision,
            attempt=ContactAttempt(
                channel=request.channel,
                at=now,
                outcome=outcome,
                debt=request.loan_id,
                attempt_id=request.attempt_id,
            ),
        )

    async def _report(self, request: ContactRequest, outcome: ContactOutcome) -> None:
        report = OutcomeReport(attempt_id=request.attempt_id, outcome=outcome)
        await _translated(self.ledger.record_outcome(request.borrower_id, report))

    @activity.defn
    async def record_contact(self, request: RecordContactRequest) -> None:
        """A contact staff recorded on a case, into the borrower's contact ledger (once)."""
        await _translated(self.ledger.record_interaction(request.borrower_id, request.interaction))

    @activity.defn
    async def send_for_signature(self, request: SignatureRequest) -> str:
        return await _translated(self.esign.send(request.agreement, request.borrower_id))

    @activity.defn
    async def signature_status(self, envelope_id: str) -> EnvelopeStatus:
        return await _translated(self.esign.status(envelope_id))

    @activity.defn
    async def void_envelope(self, envelope_id: str) -> EnvelopeStatus:
        """Withdraw an envelope the case no longer waits for (e.g. a re-assessment)."""
        return await _translated(self.esign.void(envelope_id))

    @activity.defn
    async def publish_case_events(self, request: PublishRequest) -> None:
        for event in request.events:
            await _translated(self.publisher.publish(event))

    def all(self) -> list[Callable[..., object]]:
        return [
            self.load_policy,
            self.read_loan,
            self.read_credit_record,
            self.read_ledger,
            self.apply_restructure,
            self.borrower_time_zone,
            self.contact_borrower,
            self.record_contact,
            self.send_for_signature,
            self.signature_status,
            self.void_envelope,
            self.publish_case_events,
        ]
