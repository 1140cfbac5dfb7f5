"""Accord's webhook receiver: the e-signature provider's callbacks, relayed to the case.

``POST /webhooks/esign`` takes an ``EnvelopeEvent``. The body must carry a valid
``X-Signature`` (HMAC-SHA256 under ``esign.webhook_secret``) when a secret is set. Answers:
``200 applied`` (the case took it), ``200 ignored`` (the case is past it, e.g. a repeat), ``409``
(the case cannot take it yet: send again later), ``503`` (Temporal unreachable: send again
later), ``401`` (bad signature: never applied).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import Annotated

from fastapi import FastAPI, Header, Request
from pydantic import ValidationError
from temporalio.client import Client
from temporalio.service import RPCError

from clients import connect_temporal
from schemas.http.esign import SIGNATURE_HEADER, EnvelopeEvent, WebhookReceipt
from services import case_calls
from services.common import ServiceError, documented_errors, install_error_handlers
from services.esign import sign_body
from settings import Settings

log = logging.getLogger("accord.services.webhooks")
NAME = "webhooks"
TEMPORAL_CONNECT_SECONDS = 5.0


def create_app(settings: Settings) -> FastAPI:
    client: Client | None = None
    connecting = asyncio.Lock()

    async def temporal() -> Client:
        nonlocal client
        async with connecting:
            if client is None:
                try:
                    async with asyncio.timeout(TEMPORAL_CONNECT_SECONDS):
                        client = await connect_temporal(settings)
                except (RPCError, RuntimeError, TimeoutError) as error:
                    raise ServiceError(
                        503, "case_store_unavailable", f"Temporal: {error}"
                    ) from None
            return client

    app = FastAPI(
        title="Accord webhooks",
        version="1.0.0",
        summary="Where an e-signature provider reports what the signer did.",
        description=__doc__,
    )
    install_error_handlers(app)

    @app.get("/health", operation_id="health", tags=["health"], responses=documented_errors())
    async def health() -> dict[str, str]:
        return {"service": NAME, "status": "ok"}

    @app.post(
        "/webhooks/esign",
        operation_id="esign_callback",
        tags=["webhooks"],
        responses=documented_errors(400, 409),
        # The body is read raw (its signature covers the exact bytes), so it is described here.
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": EnvelopeEvent.model_json_schema()}},
            }
        },
    )
    async def esign_callback(
        request: Request,
        signature: Annotated[str | None, Header(alias=SIGNATURE_HEADER)] = None,
    ) -> WebhookReceipt:
        """An envelope was signed or declined: tell the case."""
        body = await request.body()
        secret = settings.esign.webhook_secret
        if secret is not None:
            expected = sign_body(secret.get_secret_value(), body)
            if signature is None or not hmac.compare_digest(signature, expected):
                raise ServiceError(401, "bad_signature", f"{SIGNATURE_HEADER} does not match")
        try:
            event = EnvelopeEvent.model_validate_json(body)
        except ValidationError as error:
            raise ServiceError(400, "invalid_event", str(error).splitlines()[0]) from None
        calls = {
            "envelope.signed": case_calls.signature_completed,
            "envelope.declined": case_calls.signature_declined,
        }
        try:
            outcome = await calls[event.type](await temporal(), event.case_id, event.envelope_id)
        except RPCError as error:
            raise ServiceError(503, "case_store_unavailable", f"Temporal: {error}") from None
        log.info(
            "%s for case %s: %s %s", event.type, event.case_id, outcome.result.value, outcome.detail
        )
        if outcome.result is case_calls.CallResult.RETRY_LATER:
            raise ServiceError(409, "case_not_ready", outcome.detail)
        result = "applied" if outcome.result is case_calls.CallResult.APPLIED else "ignored"
        return WebhookReceipt(result=result, detail=outcome.detail)

    return app
