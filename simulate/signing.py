"""The borrower's side of e-signature: find the envelope of an agreement and sign (or decline)
it on the provider's signing page, as a person would submit its form."""

from __future__ import annotations

from typing import Literal
from urllib.parse import parse_qs, urlsplit

import httpx
from pydantic import TypeAdapter

from schemas.http.esign import Envelope
from settings import Settings

ENVELOPES = TypeAdapter(list[Envelope])
TIMEOUT_SECONDS = 10.0


class NoEnvelopeYet(LookupError):
    """The case has not opened the agreement's envelope yet: try again later."""


async def find_envelope(
    client: httpx.AsyncClient, settings: Settings, agreement_id: str
) -> Envelope:
    """The envelope the provider opened for ``agreement_id`` (the link its e-mail carries)."""
    token = settings.esign.token
    headers = {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}
    answer = await client.get(
        f"{settings.esign.url.rstrip('/')}/v1/envelopes",
        params={"reference": agreement_id},
        headers=headers,
    )
    answer.raise_for_status()
    envelopes = ENVELOPES.validate_json(answer.content)
    if not envelopes:
        raise NoEnvelopeYet(agreement_id)
    return envelopes[-1]


async def act_on_signing_page(
    settings: Settings, agreement_id: str, decision: Literal["sign", "decline"] = "sign"
) -> str:
    """Open the signing page and submit it; returns the page's resulting HTML."""
    async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS) as client:
        envelope = await find_envelope(client, settings, agreement_id)
        page = await client.get(envelope.signing_url)
        page.raise_for_status()
        token = parse_qs(urlsplit(envelope.signing_url).query)["token"][0]
        form_action = envelope.signing_url.split("?", 1)[0]
        answer = await client.post(form_action, data={"token": token, "decision": decision})
        answer.raise_for_status()
        return answer.text
