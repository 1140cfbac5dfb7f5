"""A borrower signs their agreement in a real browser (Debian's Chromium, headless, driven by
Playwright) on the e-signature service's page; the provider's callback reaches the case,
which applies the restructure in core banking and moves to `track`."""

from __future__ import annotations

import shutil
import uuid

import pytest
from playwright.async_api import async_playwright
from temporalio.client import Client

from schemas.case import CaseStage
from settings import Settings
from simulate.signing import find_envelope
from stack.orchestrator import Stack
from tests.integration.services_support import (
    CaseDriver,
    eventually,
    overdue,
    restructures,
    view_when,
)
from tests.integration.streams_support import EventProducer

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which(CHROMIUM) or shutil.which("chromium")
    if path is None:
        pytest.fail("Chromium is needed: apt-get install -y chromium chromium-driver")
    return path


async def test_a_borrower_signs_in_a_browser_and_the_case_moves_to_track(
    stack_apps: Stack, stack_settings: Settings, temporal_client: Client, chromium: str
) -> None:
    import httpx

    loan = overdue(f"L-web-{uuid.uuid4().hex[:6]}")
    async with EventProducer(stack_settings) as producer:
        await producer.send_events(stack_settings.kafka.topics.overdue, [loan])
    driver = CaseDriver(temporal_client, stack_settings, loan)
    await driver.answer_contact()
    view = await driver.choose_plan()
    assert view.agreement is not None
    agreement_id = view.agreement.agreement_id
    async with httpx.AsyncClient(timeout=10) as client:
        # The agreement is issued before it is sent for signature: wait for its envelope.
        envelope = await eventually(
            lambda: find_envelope(client, stack_settings, agreement_id),
            within=60,
            what=f"the envelope of {agreement_id}",
        )

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        try:
            page = await browser.new_page()
            await page.goto(envelope.signing_url)
            assert agreement_id in await page.title()
            assert await page.locator("#state").inner_text() == "sent"
            await page.locator("#sign").click()
            await page.wait_for_selector("#outcome")
            outcome = await page.locator("#outcome").inner_text()
        finally:
            await browser.close()

    assert outcome.startswith("Signed on")
    tracked = await view_when(
        driver.handle, lambda v: v.stage is CaseStage.TRACK, within=90, what="track"
    )
    assert tracked.agreement is not None and tracked.agreement.agreement_id == agreement_id
    applied = [r for r in await restructures(stack_settings) if r.agreement_id == agreement_id]
    assert len(applied) == 1
