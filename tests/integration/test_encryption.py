"""With a key configured, what Temporal stores is ciphertext; the same client reads it back."""

from __future__ import annotations

import uuid

import pytest
from pydantic import SecretStr
from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import Worker

from clients import connect_temporal
from encryption.codec import ENCODING, new_key
from schemas.events import LoanPayment
from settings import Settings

pytestmark = pytest.mark.integration


@workflow.defn(sandboxed=False)
class EchoPaymentWorkflow:
    @workflow.run
    async def run(self, payment: LoanPayment) -> LoanPayment:
        return payment


async def test_history_holds_only_ciphertext(stack_settings: Settings, temporal_client: Client):
    encryption = stack_settings.encryption.model_copy(update={"key": SecretStr(new_key())})
    keyed = stack_settings.model_copy(update={"encryption": encryption})
    sealed = await connect_temporal(keyed)
    payment = LoanPayment.model_validate(
        {
            "event_id": "p-enc-1",
            "occurred_at": "2026-11-20T10:00:00+08:00",
            "schema_version": 1,
            "loan_id": "L-ENC-1",
            "currency": "CNY",
            "amount": "8765.43",
            "paid_at": "2026-11-20T09:59:00+08:00",
            "channel": "card",
        }
    )
    task_queue = f"encryption-{uuid.uuid4()}"
    async with Worker(sealed, task_queue=task_queue, workflows=[EchoPaymentWorkflow]):
        handle = await sealed.start_workflow(
            EchoPaymentWorkflow.run, payment, id=f"enc-{uuid.uuid4()}", task_queue=task_queue
        )
        assert await handle.result() == payment

    # The session's client has no key: it sees what the server stores.
    history = await temporal_client.get_workflow_handle(handle.id).fetch_history()
    raw = b"".join(event.SerializeToString() for event in history.events)
    assert ENCODING in raw
    for clear_text in (b"8765.43", b"amount", b"L-ENC-1", b"p-enc-1"):
        assert clear_text not in raw, clear_text
