"""The embedded services served for real (uvicorn on a free loopback port, in this process),
for the adapters to call over HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from services import contact, core_banking, esign
from services.common import serve
from settings import Settings
from stack.isolated import isolated_settings

TOKEN = "contract-test-token"
STARTUP_SECONDS = 30.0


@dataclass
class Served:
    app: FastAPI
    url: str

    async def faults(self, **plan: object) -> None:
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            answer = await client.put(f"{self.url}/admin/faults", json=plan)
        answer.raise_for_status()


@pytest.fixture(scope="session")
def contract_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return isolated_settings(
        tmp_path_factory.mktemp("contract"),
        core_banking={"token": TOKEN, "timeout_seconds": 2.0},
        esign={"token": TOKEN, "timeout_seconds": 2.0},
        contact={"token": TOKEN, "timeout_seconds": 2.0, "delivery_seconds": 0.2},
    )


async def _served(app: FastAPI, url: str) -> AsyncIterator[Served]:
    host, port = url.removeprefix("http://").split(":")
    server = asyncio.create_task(serve(app, host, int(port), "warning"))
    deadline = time.monotonic() + STARTUP_SECONDS
    async with httpx.AsyncClient() as client:
        while True:
            try:
                if (await client.get(f"{url}/health")).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.done() or time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not start")
            await asyncio.sleep(0.05)
    try:
        yield Served(app, url)
    finally:
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)


def _fixture(build: Callable[[Settings], FastAPI], setting: str):
    @pytest.fixture(scope="session")
    async def served(contract_settings: Settings) -> AsyncIterator[Served]:
        url = getattr(contract_settings, setting).url
        async for item in _served(build(contract_settings), url):
            yield item

    return served


core_banking_service = _fixture(
    lambda settings: core_banking.create_app(settings, feed=False), "core_banking"
)
esign_service = _fixture(esign.create_app, "esign")
contact_service = _fixture(contact.create_app, "contact")


@pytest.fixture(autouse=True)
async def no_faults_left(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Every test starts without faults on the services it uses."""
    yield
    for name in ("core_banking_service", "esign_service", "contact_service"):
        if name in request.fixturenames:
            served: Served = request.getfixturevalue(name)
            await served.faults()


def book_path(settings: Settings) -> Path:
    return core_banking.database_path(settings)
