"""Each HTTP adapter against its embedded service, over real HTTP: the happy paths, the
idempotency keys, and every error the OpenAPI document lists handled as it says
(``x-retryable`` -> ``SystemUnavailable``, otherwise ``PermanentRejection``)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from activities.esign import EnvelopeState
from activities.faults import PermanentRejection, SystemUnavailable
from activities.http_adapters import (
    ContactDirectoryHttp,
    ContactGatewayHttp,
    CoreBankingHttp,
    ESignatureHttp,
)
from schemas.contact import ContactChannel, ContactOutcome
from schemas.events import LoanOverdue, LoanPayment, PaymentChannel
from schemas.plan import Agreement
from settings import Settings
from simulate.signing import act_on_signing_page
from tests.contract.conftest import Served
from tests.factories import agreement, loan

pytestmark = pytest.mark.integration

Call = Callable[[], Awaitable[Any]]


def new_loan(settings: Settings, served: Served) -> LoanOverdue:
    """A loan the core-banking service knows (as if it came on ``loan.overdue.v1``)."""
    loan_id = f"L-{uuid.uuid4().hex[:8]}"
    overdue = loan(loan_id=loan_id, borrower_id=f"B-{loan_id}", event_id=f"{loan_id}-o")
    served.app.state.book.apply_message(
        settings.kafka.topics.overdue, 0, 0, overdue.model_dump_json().encode()
    )
    return overdue


def pay(settings: Settings, served: Served, loan_id: str, amount: str, paid_at: datetime) -> None:
    payment = LoanPayment(
        event_id=f"{loan_id}-{uuid.uuid4().hex[:6]}",
        occurred_at=paid_at,
        schema_version=1,
        loan_id=loan_id,
        currency="CNY",
        amount=Decimal(amount),
        paid_at=paid_at,
        channel=PaymentChannel.BANK_TRANSFER,
    )
    served.app.state.book.apply_message(
        settings.kafka.topics.payment, 0, 0, payment.model_dump_json().encode()
    )


def agreement_for(overdue: LoanOverdue) -> Agreement:
    return agreement(overdue)


# --- core banking -----------------------------------------------------------------------------


async def test_core_banking_reads_what_the_book_holds(
    contract_settings: Settings, core_banking_service: Served
) -> None:
    overdue = new_loan(contract_settings, core_banking_service)
    pay(contract_settings, core_banking_service, overdue.loan_id, "100.00",
        datetime(2026, 3, 2, 10, tzinfo=UTC))  # fmt: skip
    pay(contract_settings, core_banking_service, overdue.loan_id, "250.50",
        datetime(2026, 3, 20, 10, tzinfo=UTC))  # fmt: skip
    adapter = CoreBankingHttp(contract_settings.core_banking)
    directory = ContactDirectoryHttp(contract_settings.core_banking)
    try:
        assert await adapter.read_loan(overdue.loan_id, None) == overdue
        ledger = await adapter.read_ledger(overdue.loan_id, date(2026, 3, 10))
        assert ledger.paid_total == Decimal("250.50")
        assert ledger.last_paid_at == datetime(2026, 3, 20, 10, tzinfo=UTC)
        assert (await adapter.read_credit_record(overdue.borrower_id)).broken_agreements == 0
        details = await directory.lookup(overdue.borrower_id)
        assert details.phone and details.email and details.time_zone
        with pytest.raises(PermanentRejection, match="unknown_loan"):
            await adapter.read_loan("L-nobody", None)
        with pytest.raises(PermanentRejection, match="unknown_customer"):
            await directory.lookup("B-nobody")
    finally:
        await adapter.aclose()
        await directory.aclose()


async def test_a_restructure_is_applied_once_whatever_the_retries(
    contract_settings: Settings, core_banking_service: Served
) -> None:
    overdue = new_loan(contract_settings, core_banking_service)
    agreement = agreement_for(overdue)
    adapter = CoreBankingHttp(contract_settings.core_banking)
    signed_at = datetime.now(UTC)
    try:
        # The first answer is lost after the books changed: the retry must not apply it again.
        await core_banking_service.faults(
            errors=[{"operation": "apply_restructure", "status": 503, "after_effect": True}]
        )
        with pytest.raises(SystemUnavailable):
            await adapter.apply_restructure(agreement, signed_at)
        await core_banking_service.faults()
        first = await adapter.apply_restructure(agreement, signed_at)
        again = await adapter.apply_restructure(agreement, signed_at)
        other_terms = agreement.model_copy(
            update={
                "schedule": agreement.schedule.model_copy(
                    update={"instalments": (agreement.schedule.instalments[0],)}
                )
            }
        )
        with pytest.raises(PermanentRejection, match="idempotency_conflict"):
            await adapter.apply_restructure(other_terms, signed_at)
    finally:
        await adapter.aclose()
    assert first == again
    book = core_banking_service.app.state.book.restructures(overdue.loan_id)
    assert [(r.agreement_id, r.requests) for r in book] == [(agreement.agreement_id, 3)]
    assert book[0].restructure_ref == first.restructure_ref


async def test_restructure_references_are_never_reused(
    contract_settings: Settings, core_banking_service: Served
) -> None:
    adapter = CoreBankingHttp(contract_settings.core_banking)
    try:
        refs = [
            (await adapter.apply_restructure(
                agreement_for(new_loan(contract_settings, core_banking_service)),
                datetime.now(UTC),
            )).restructure_ref
            for _ in range(3)
        ]  # fmt: skip
    finally:
        await adapter.aclose()
    all_refs = [r.restructure_ref for r in core_banking_service.app.state.book.restructures()]
    assert len(set(all_refs)) == len(all_refs)
    assert set(refs) <= set(all_refs)


# --- e-signature ------------------------------------------------------------------------------


async def test_an_envelope_per_agreement_signed_on_its_page(
    contract_settings: Settings, esign_service: Served
) -> None:
    agreement = agreement_for(loan(loan_id=f"L-{uuid.uuid4().hex[:8]}"))
    adapter = ESignatureHttp(contract_settings.esign, "http://127.0.0.1:9/unused")
    try:
        envelope_id = await adapter.send(agreement, "B-1")
        assert await adapter.send(agreement, "B-1") == envelope_id  # idempotent by agreement
        assert (await adapter.status(envelope_id)).state is EnvelopeState.SENT

        page = await act_on_signing_page(contract_settings, agreement.agreement_id)

        assert "Signed on" in page
        status = await adapter.status(envelope_id)
        assert status.state is EnvelopeState.SIGNED and status.signed_at is not None
        with pytest.raises(PermanentRejection, match="already_signed"):
            await adapter.void(envelope_id)
        with pytest.raises(PermanentRejection, match="unknown_envelope"):
            await adapter.status("env-nobody")
    finally:
        await adapter.aclose()


async def test_voiding_is_idempotent_and_closes_the_page(
    contract_settings: Settings, esign_service: Served
) -> None:
    agreement = agreement_for(loan(loan_id=f"L-{uuid.uuid4().hex[:8]}"))
    adapter = ESignatureHttp(contract_settings.esign, "http://127.0.0.1:9/unused")
    try:
        envelope_id = await adapter.send(agreement, "B-2")
        assert (await adapter.void(envelope_id)).state is EnvelopeState.VOIDED
        assert (await adapter.void(envelope_id)).state is EnvelopeState.VOIDED
    finally:
        await adapter.aclose()
    with pytest.raises(httpx.HTTPStatusError) as refused:
        await act_on_signing_page(contract_settings, agreement.agreement_id)
    assert refused.value.response.status_code == 409


# --- contact gateway --------------------------------------------------------------------------


async def test_a_message_is_sent_once_per_key_with_its_final_status(
    contract_settings: Settings, contact_service: Served
) -> None:
    gateway = ContactGatewayHttp(contract_settings.contact)
    key = f"case-x-c1-{uuid.uuid4().hex[:6]}"
    to = f"+86-555-{uuid.uuid4().hex[:6]}"
    try:
        assert await gateway.send(ContactChannel.SMS, to, "info_request", key) is (
            ContactOutcome.DELIVERED
        )
        assert await gateway.send(ContactChannel.SMS, to, "info_request", key) is (
            ContactOutcome.DELIVERED
        )
        call = await gateway.send(ContactChannel.PHONE, to, "info_reminder", f"{key}-phone")
        assert call is ContactOutcome.UNANSWERED
        with pytest.raises(PermanentRejection):
            await gateway.send(ContactChannel.LETTER, to, "info_request", f"{key}-letter")
    finally:
        await gateway.aclose()
    received = contact_service.app.state.messages.to(to, datetime.now(UTC))
    assert [(m.channel.value, m.template) for m in received] == [
        ("sms", "info_request"),
        ("phone", "info_reminder"),
    ]
    async with httpx.AsyncClient() as client:
        inbox = await client.get(f"{contact_service.url}/inbox/{to}")
    assert inbox.status_code == 200 and "tell us your income" in inbox.text


# --- every documented error -------------------------------------------------------------------


def adapter_calls(settings: Settings, overdue: LoanOverdue) -> dict[str, dict[str, Call]]:
    """Service -> operation id -> the adapter call that uses it."""
    core = CoreBankingHttp(settings.core_banking)
    directory = ContactDirectoryHttp(settings.core_banking)
    esign = ESignatureHttp(settings.esign, "http://127.0.0.1:9/unused")
    gateway = ContactGatewayHttp(settings.contact)
    agreement = agreement_for(overdue)
    return {
        "core-banking": {
            "read_loan": lambda: core.read_loan(overdue.loan_id, None),
            "read_ledger": lambda: core.read_ledger(overdue.loan_id, date(2026, 1, 1)),
            "read_credit_record": lambda: core.read_credit_record(overdue.borrower_id),
            "read_contact_details": lambda: directory.lookup(overdue.borrower_id),
            "apply_restructure": lambda: core.apply_restructure(agreement, datetime.now(UTC)),
        },
        "esign": {
            "create_envelope": lambda: esign.send(agreement, overdue.borrower_id),
            "read_envelope": lambda: esign.status("env-any"),
            "void_envelope": lambda: esign.void("env-any"),
        },
        "contact": {
            "send_message": lambda: gateway.send(
                ContactChannel.SMS, "+86-555-1", "info_request", uuid.uuid4().hex
            ),
        },
    }


async def test_every_documented_error_is_handled_as_documented(
    contract_settings: Settings,
    core_banking_service: Served,
    esign_service: Served,
    contact_service: Served,
) -> None:
    services = {"core-banking": core_banking_service, "esign": esign_service,
                "contact": contact_service}  # fmt: skip
    overdue = new_loan(contract_settings, core_banking_service)
    checked = []
    for name, calls in adapter_calls(contract_settings, overdue).items():
        served = services[name]
        document = served.app.openapi()
        operations = {
            op["operationId"]: op for path in document["paths"].values() for op in path.values()
        }
        assert set(calls) <= set(operations), f"{name}: an adapter uses an undocumented call"
        for operation_id, call in calls.items():
            errors = {
                int(status): response["x-retryable"]
                for status, response in operations[operation_id]["responses"].items()
                if int(status) >= 400
            }
            assert errors, f"{name} {operation_id} documents no error"
            for status, retryable in errors.items():
                await served.faults(
                    errors=[{"operation": operation_id, "status": status, "remaining": 1}]
                )
                expected = SystemUnavailable if retryable else PermanentRejection
                with pytest.raises(expected, match=f"HTTP {status}"):
                    await call()
                checked.append((name, operation_id, status))
    # Every adapter operation, each with at least the statuses every operation may answer.
    assert len(checked) >= 9 * 6


async def test_slow_down_and_unreachable_systems_are_retryable(
    contract_settings: Settings, core_banking_service: Served
) -> None:
    overdue = new_loan(contract_settings, core_banking_service)
    adapter = CoreBankingHttp(contract_settings.core_banking)
    try:
        await core_banking_service.faults(latency_seconds=3.0)  # above the 2 s timeout
        with pytest.raises(SystemUnavailable, match="did not answer within 2s"):
            await adapter.read_loan(overdue.loan_id, None)
        await core_banking_service.faults(outage=True)
        with pytest.raises(SystemUnavailable, match="HTTP 503"):
            await adapter.read_loan(overdue.loan_id, None)
    finally:
        await adapter.aclose()
    closed_port = contract_settings.core_banking.model_copy(update={"url": "http://127.0.0.1:9"})
    nowhere = CoreBankingHttp(closed_port)
    try:
        with pytest.raises(SystemUnavailable, match="unreachable"):
            await nowhere.read_loan(overdue.loan_id, None)
    finally:
        await nowhere.aclose()


async def test_a_wrong_token_is_refused_for_good(
    contract_settings: Settings, core_banking_service: Served
) -> None:
    overdue = new_loan(contract_settings, core_banking_service)
    wrong = contract_settings.core_banking.model_copy(update={"token": SecretStr("wrong")})
    adapter = CoreBankingHttp(wrong)
    try:
        with pytest.raises(PermanentRejection, match="HTTP 401"):
            await adapter.read_loan(overdue.loan_id, None)
    finally:
        await adapter.aclose()


async def test_an_answer_outside_the_contract_is_not_retried(contract_settings: Settings) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"loan_id": "L-1", "unexpected": True})

    adapter = CoreBankingHttp(contract_settings.core_banking, httpx.MockTransport(answer))
    try:
        with pytest.raises(PermanentRejection, match="outside its contract"):
            await adapter.read_loan("L-1", None)
    finally:
        await adapter.aclose()
