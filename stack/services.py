"""The embedded external systems as stack components: core banking, e-signature, the contact
gateway, and Accord's webhook receiver (``accord service run NAME``), each probed on its own
``/health``."""

from __future__ import annotations

import sys
from typing import ClassVar

import httpx

from services.registry import URL_SETTINGS, base_url, bind_address
from stack.component import Component
from stack.environment import child_env
from stack.errors import StackError
from stack.ports import PortClaim

HTTP_TIMEOUT_SECONDS = 3.0


async def probe_health(url: str, expected_service: str) -> None:
    """GET ``url``; healthy is a 200 naming ``expected_service`` (not some other process that
    happens to hold the port)."""
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_SECONDS) as client:
        answer = await client.get(url)
    if answer.status_code != 200:
        raise StackError(f"{url} answered HTTP {answer.status_code}: {answer.text[:200]}")
    try:
        service = answer.json().get("service")
    except ValueError:
        service = None
    if service != expected_service:
        raise StackError(f"{url} is not the {expected_service} health endpoint")


class LocalService(Component):
    phase = 1
    startup_timeout = 60.0
    stop_timeout = 10.0
    setting: ClassVar[str]

    @property
    def address(self) -> str:
        return base_url(self.name, self.settings)

    def port_claims(self) -> list[PortClaim]:
        try:
            host, port = bind_address(self.name, self.settings)
        except ValueError as error:
            raise StackError(str(error)) from None
        return [PortClaim(self.name, host, port, self.setting)]

    def command(self) -> list[str]:
        return [sys.executable, "-m", "cli.main", "service", "run", self.name]

    def env(self) -> dict[str, str]:
        return child_env(self.settings)

    async def probe(self) -> None:
        await probe_health(f"{self.address}/health", self.name)


class CoreBankingService(LocalService):
    name = "core-banking"
    setting = f"{URL_SETTINGS['core-banking']}.url"


class ESignService(LocalService):
    name = "esign"
    setting = f"{URL_SETTINGS['esign']}.url"


class ContactService(LocalService):
    name = "contact"
    setting = f"{URL_SETTINGS['contact']}.url"


class WebhookReceiver(LocalService):
    name = "webhooks"
    setting = "webhooks.port"


class DeskService(Component):
    """The operations desk (`accord desk`): staff pages and the API `accord login` uses."""

    name = "desk"
    phase = 1
    startup_timeout = 60.0
    stop_timeout = 10.0

    @property
    def address(self) -> str:
        return self.settings.desk.url

    def port_claims(self) -> list[PortClaim]:
        desk = self.settings.desk
        return [PortClaim(self.name, desk.host, desk.port, "desk.port")]

    def prepare(self) -> None:
        # The development signing key, before the worker and the desk both look for it.
        from staff.keys import signing_key

        signing_key(self.settings)

    def command(self) -> list[str]:
        return [sys.executable, "-m", "cli.main", "desk"]

    def env(self) -> dict[str, str]:
        return child_env(self.settings)

    async def probe(self) -> None:
        desk = self.settings.desk
        await probe_health(f"http://{desk.host}:{desk.port}/health", self.name)
