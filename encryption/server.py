"""The codec server: lets the Temporal UI (and CLI) show decrypted payloads to authorised staff.

Implements Temporal's remote codec protocol: ``POST /decode`` and ``POST /encode`` with a
``Payloads`` message as protobuf JSON. Requests must carry ``Authorization: Bearer <token>``
(RFC 6750); it runs without a token only when told ``--insecure-dev``. CORS is granted
to the configured UI origin only.
"""

from __future__ import annotations

import hmac
import logging
import re

from aiohttp import hdrs, web
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads

from encryption.codec import EncryptionCodec, PayloadKeyError
from settings import EncryptionSettings

log = logging.getLogger("accord.codec")

# RFC 6750 §2.1: the scheme is case-insensitive, then one or more spaces, then a token68.
_BEARER = re.compile(r"bearer +([A-Za-z0-9\-._~+/]+=*)", re.IGNORECASE)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None for anything else."""
    if authorization is None:
        return None
    found = _BEARER.fullmatch(authorization.strip())
    return found.group(1) if found else None


def build_codec_app(codec: EncryptionCodec, cfg: EncryptionSettings) -> web.Application:
    token = cfg.codec_server_token.get_secret_value() if cfg.codec_server_token else None

    def cors(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
        if request.headers.get(hdrs.ORIGIN) == cfg.ui_origin:
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = cfg.ui_origin
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_METHODS] = "POST"
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_HEADERS] = (
                "content-type,x-namespace,authorization"
            )
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_CREDENTIALS] = "true"
        return response

    def authorised(request: web.Request) -> bool:
        if token is None:  # only with `accord codec serve --insecure-dev`
            return True
        presented = bearer_token(request.headers.get(hdrs.AUTHORIZATION))
        return presented is not None and hmac.compare_digest(presented.encode(), token.encode())

    async def preflight(request: web.Request) -> web.StreamResponse:
        return cors(request, web.Response())

    def handler(decode: bool):
        async def handle(request: web.Request) -> web.StreamResponse:
            if not authorised(request):
                log.warning("codec request refused: missing or wrong bearer token")
                return cors(request, web.json_response({"error": "unauthorised"}, status=401))
            try:
                payloads = json_format.Parse(await request.read(), Payloads())
                converted = await (codec.decode if decode else codec.encode)(payloads.payloads)
            except (json_format.ParseError, PayloadKeyError, UnicodeDecodeError) as error:
                return cors(request, web.json_response({"error": str(error)}, status=400))
            body = json_format.MessageToJson(Payloads(payloads=converted))
            return cors(request, web.Response(text=body, content_type="application/json"))

        return handle

    app = web.Application()
    app.router.add_route("OPTIONS", "/{tail:.*}", preflight)
    app.router.add_post("/decode", handler(decode=True))
    app.router.add_post("/encode", handler(decode=False))
    return app
