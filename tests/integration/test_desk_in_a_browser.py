"""The desk in a real browser (Debian's Chromium, headless, driven by Playwright), as a team lead
uses it: sign in; filter the list to `track` with more than 30 days past due and see exactly
the right cases; export that list as CSV and check its rows; approve a waiver within the team
lead's authority; be refused, with the reason shown, approving what needs the credit committee.

The cases in `track` run on compressed time (a policy of this test's own portfolio, half a
second a day) so one of them can be more than 30 days late on its plan within a minute; the
others run on the real clock under the default policy. Screenshots of the list and the case
page are taken on the way (``ACCORD_UPDATE_SCREENSHOTS=1`` also writes them to docs/).
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from playwright.async_api import Page, async_playwright
from temporalio.client import Client

from schemas.events import LoanPayment, PaymentChannel
from settings import Settings
from simulate.timescale import policy_now, write_compressed_policy
from stack.orchestrator import Stack
from tests.integration.desk_support import (
    DeskCase,
    desk,  # noqa: F401 - the fixture
    desk_loan,
    lump_sum_budget,
    open_cases,
    password,
    tight_budget,
    waiting_for_approval,
)
from tests.integration.services_support import CaseDriver, eventually
from tests.integration.streams_support import EventProducer
from tests.integration.test_signing_in_a_browser import CHROMIUM_FLAGS, chromium  # noqa: F401
from workflows import search_attributes as sa

pytestmark = pytest.mark.integration

DOCS = Path(__file__).resolve().parents[2] / "docs"
README = DOCS.parent / "README.md"
SECONDS_PER_POLICY_DAY = Decimal("0.5")


@pytest.fixture(scope="module")
async def cases(
    desk: Stack,  # noqa: F811
    stack_settings: Settings,
    temporal_client: Client,
) -> AsyncIterator[dict[str, DeskCase]]:
    """``late`` and ``paid`` in track on compressed time (``late`` pays nothing, ``paid`` paid
    three instalments ahead); ``waiver`` waiting for a team lead, ``settlement`` for the
    committee, on the real clock."""
    tag = uuid.uuid4().hex[:6]
    fast, slow = f"desk-fast-{tag}", f"desk-slow-{tag}"
    write_compressed_policy(
        stack_settings.policy_file,
        stack_settings.portfolio_policy_dir / f"{fast}.toml",
        SECONDS_PER_POLICY_DAY,
        # Days pass in half a second: room for the test to answer, sign and pay; late for
        # months without the plan breaking or a periodic re-assessment (the list is under test).
        durations={
            "info_deadline_days": 60,
            "offer_response_days": 60,
            "signature_expiry_days": 60,
            "first_instalment_days": 10,
            "reassessment_interval_days": 365,
            "default_after_missed_instalments": 12,
        },
    )
    late, paid, waiver, settlement = await open_cases(
        stack_settings,
        temporal_client,
        [
            desk_loan("late", fast),
            desk_loan("paid", fast),
            desk_loan("waiver", slow),
            desk_loan("settle", slow, days_past_due=150),
        ],
    )
    drivers = {c.case_id: CaseDriver(temporal_client, stack_settings, c.loan) for c in (late, paid)}
    for case in (late, paid):
        driver = drivers[case.case_id]
        await driver.answer_contact()
        await driver.choose_plan()
        await driver.sign()
    # `paid` pays three instalments ahead, on its own clock.
    view = await paid.handle.view()
    ahead = sum((t.instalment.amount for t in view.schedule[:3]), Decimal(0))
    paid_at = policy_now(view.opened_at, datetime.now(UTC), view.time_scale)
    async with EventProducer(stack_settings) as producer:
        await producer.send_events(
            stack_settings.kafka.topics.payment,
            [
                LoanPayment(
                    event_id=f"{paid.loan.loan_id}-ahead",
                    occurred_at=paid_at,
                    schema_version=1,
                    loan_id=paid.loan.loan_id,
                    currency=paid.loan.currency,
                    amount=ahead,
                    paid_at=paid_at,
                    channel=PaymentChannel.BANK_TRANSFER,
                )
            ],
        )
    await waiting_for_approval(waiver, tight_budget())
    await waiting_for_approval(settlement, lump_sum_budget())

    async def late_enough() -> int | None:
        described = await temporal_client.get_workflow_handle(late.case_id).describe()
        attributes = described.typed_search_attributes
        days = attributes.get(sa.DAYS_PAST_DUE)
        in_track = attributes.get(sa.CASE_STAGE) == "track"
        return days if in_track and days is not None and days > 30 else None

    await eventually(late_enough, within=120, what="the late case more than 30 days past due")
    try:
        yield {"late": late, "paid": paid, "waiver": waiver, "settlement": settlement}
    finally:
        for case in (late, paid, waiver, settlement):  # compressed cases would run on
            await temporal_client.get_workflow_handle(case.case_id).terminate("test over")


@pytest.fixture(scope="module")
async def page(
    chromium: str,  # noqa: F811
    stack_settings: Settings,
) -> AsyncIterator[Page]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        try:
            context = await browser.new_context(
                base_url=stack_settings.desk.url,
                accept_downloads=True,
                viewport={"width": 1400, "height": 900},
            )
            yield await context.new_page()
        finally:
            await browser.close()


def screenshot_path(tmp_path: Path, name: str) -> Path:
    return tmp_path / name


async def keep_screenshot(page: Page, tmp_path: Path, name: str) -> None:
    taken = tmp_path / name
    await page.screenshot(path=str(taken), full_page=True)
    assert taken.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("ACCORD_UPDATE_SCREENSHOTS") == "1":
        shutil.copyfile(taken, DOCS / name)


async def test_a_team_lead_finds_exports_and_acts_on_cases(
    page: Page, cases: dict[str, DeskCase], tmp_path: Path
) -> None:
    # Sign in.
    await page.goto("/cases")
    assert "/login" in page.url
    await page.fill("#staff_id", "tl-1")
    await page.fill("#password", password("tl-1"))
    await page.click("#sign-in")
    await page.wait_for_url("**/cases")
    assert "tl-1 · team_lead" in await page.locator("header").inner_text()

    # Filter to track, more than 30 days past due, within this test's compressed portfolio.
    portfolio = cases["late"].loan.portfolio
    assert portfolio is not None
    await page.select_option("#filter-stage", "track")
    await page.fill("input[name=portfolio]", portfolio)
    await page.click("#apply-filters")
    await page.wait_for_url("**/cases?*")
    both = await page.locator("#cases tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.caseId)"
    )
    assert set(both) == {cases["late"].case_id, cases["paid"].case_id}
    await page.fill("#filter-dpd-over", "30")
    await page.click("#apply-filters")
    await page.wait_for_url("**dpd_over=30*")
    rows = await page.locator("#cases tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.caseId)"
    )
    assert rows == [cases["late"].case_id]
    days = int(await page.locator("#cases tbody tr td.dpd").inner_text())
    assert days > 30
    assert await page.locator("#cases tbody tr td.stage").inner_text() == "track"
    await keep_screenshot(page, tmp_path, "desk-list.png")

    # Export that list as CSV.
    async with page.expect_download() as download_info:
        await page.click("#export-csv")
    download = await download_info.value
    saved = tmp_path / "cases.csv"
    await download.save_as(saved)
    exported = list(csv.DictReader(io.StringIO(saved.read_text())))
    assert [row["case_id"] for row in exported] == [cases["late"].case_id]
    assert exported[0]["stage"] == "track" and int(exported[0]["days_past_due"]) > 30
    assert exported[0]["portfolio"] == portfolio
    assert exported[0]["outstanding_band"].isdigit()  # a band, never the exact balance

    # Approve a waiver within a team lead's authority.
    waiver = cases["waiver"].case_id
    await page.goto(f"/cases/{waiver}")
    pending = page.locator("#options tr[data-option-id]").filter(has=page.locator("button"))
    option_id = await pending.first.get_attribute("data-option-id")
    await pending.first.locator("form[data-action=approve] button").click()
    await page.wait_for_selector("#done")
    assert "approve: approved" in await page.locator("#done").inner_text()
    row = page.locator(f"#options tr[data-option-id='{option_id}']")
    assert "approved by tl-1" in await row.inner_text()
    await keep_screenshot(page, tmp_path, "desk-case.png")

    # Refused, with the reason shown, above the team lead's authority.
    settlement = cases["settlement"].case_id
    await page.goto(f"/cases/{settlement}")
    committee = page.locator("#options tr[data-option-id]", has_text="credit_committee")
    await committee.first.locator("form[data-action=approve] button").click()
    await page.wait_for_selector("#refused")
    reason = await page.locator("#refused").inner_text()
    assert "needs credit_committee authority; tl-1 (team_lead) has team_lead" in reason
    view = await cases["settlement"].handle.view()
    assert view.approval is not None and not view.approved_by


def readme_queries() -> list[str]:
    """The example queries in the README's Temporal UI paragraph."""
    text = README.read_text()
    start = text.index("- **Temporal UI**")
    paragraph = re.sub(r"\s*\n\s*", " ", text[start : text.index("Attributes:", start)])
    return re.findall(r"`([^`]+ = [^`]+)`", paragraph)


# Which of this module's cases each README query must find (it may find others' cases too).
README_QUERY_FINDS = {
    'CaseStage = "track" AND DaysPastDue > 30': {"late"},
    'AwaitingApproval = "credit_committee"': {"settlement"},
    'CaseHolds = "dispute"': set(),
}


async def test_the_readmes_example_queries_find_what_they_promise(
    cases: dict[str, DeskCase], temporal_client: Client
) -> None:
    queries = readme_queries()
    assert queries and set(queries) == set(README_QUERY_FINDS), queries
    ours = {case.case_id: name for name, case in cases.items()}

    for query in queries:

        async def found(query: str = query) -> set[str] | None:
            names = {
                ours[execution.id]
                async for execution in temporal_client.list_workflows(query)
                if execution.id in ours
            }
            return names if names == README_QUERY_FINDS[query] else None

        await eventually(found, within=30, what=f"the README's query {query}")
