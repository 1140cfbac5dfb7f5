"""The services by name: where each listens, how to build it, its OpenAPI document."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI

from services import contact, core_banking, esign, webhooks
from services.common import serve
from settings import Settings

FACTORIES: dict[str, Callable[[Settings], FastAPI]] = {
    core_banking.NAME: core_banking.create_app,
    esign.NAME: esign.create_app,
    contact.NAME: contact.create_app,
    webhooks.NAME: webhooks.create_app,
}
SERVICE_NAMES = tuple(FACTORIES)
# The settings field that gives each stand-in's URL (the webhook receiver has host and port).
URL_SETTINGS = {core_banking.NAME: "core_banking", esign.NAME: "esign", contact.NAME: "contact"}


def base_url(name: str, settings: Settings) -> str:
    if name == webhooks.NAME:
        return f"http://{settings.webhooks.host}:{settings.webhooks.port}"
    return str(getattr(settings, URL_SETTINGS[name]).url).rstrip("/")


def bind_address(name: str, settings: Settings) -> tuple[str, int]:
    """Where the embedded service listens: the host and port of the URL clients use."""
    if name == webhooks.NAME:
        return settings.webhooks.host, settings.webhooks.port
    url = urlsplit(base_url(name, settings))
    if url.scheme != "http" or url.hostname is None or url.port is None:
        raise ValueError(
            f"{URL_SETTINGS[name]}.url: the embedded {name} service serves plain http on an "
            f"explicit loopback port, not {base_url(name, settings)!r}"
        )
    return url.hostname, url.port


def openapi_documents(settings: Settings) -> dict[str, dict[str, Any]]:
    """Each service's OpenAPI document. The apps are built on a scratch data dir and only
    described, never started: the data dir in ``settings`` is not touched."""
    with tempfile.TemporaryDirectory(prefix="accord-openapi-") as scratch:
        scratch_settings = settings.model_copy(update={"data_dir": Path(scratch)})
        return {name: FACTORIES[name](scratch_settings).openapi() for name in SERVICE_NAMES}


async def run_service(name: str, settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    host, port = bind_address(name, settings)
    await serve(FACTORIES[name](settings), host, port, settings.log_level)
