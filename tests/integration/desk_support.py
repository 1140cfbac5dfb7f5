"""The desk on the embedded stack for tests: staff accounts, signed-in HTTP clients, and cases in
the states the desk's tests need (options waiting for a team lead or the committee)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from engine.actions import SubmitFinancials
from schemas.case import CaseStage, CaseView
from schemas.events import LoanOverdue
from schemas.staff import StaffRole
from settings import Settings
from stack.orchestrator import Stack
from staff.accounts import Accounts
from tests import factories
from tests.integration.services_support import act, view_when
from tests.integration.streams_support import EventProducer
from workflows.handle import CaseHandle

ACCOUNTS = {
    "ag-1": StaffRole.AGENT,
    "tl-1": StaffRole.TEAM_LEAD,
    "cc-1": StaffRole.CREDIT_COMMITTEE,
}


def password(staff_id: str) -> str:
    return f"correct horse {staff_id}"


@pytest.fixture(scope="module")
async def desk(stack_apps: Stack) -> AsyncIterator[Stack]:
    """The desk as a stack component, with an agent, a team lead and a credit committee
    member in its accounts file."""
    accounts = Accounts(stack_apps.settings.staff_accounts_file)
    for staff_id, role in ACCOUNTS.items():
        accounts.add(staff_id, role, password(staff_id))
    running = Stack(stack_apps.settings, only=("desk",))
    try:
        await running.up()
        yield running
    finally:
        await running.down()


async def api_token(settings: Settings, staff_id: str) -> str:
    async with httpx.AsyncClient(base_url=settings.desk.url, timeout=10) as client:
        answer = await client.post(
            "/api/login", json={"staff_id": staff_id, "password": password(staff_id)}
        )
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["token"]
    return token


@dataclass
class DeskCase:
    loan: LoanOverdue
    handle: CaseHandle

    @property
    def case_id(self) -> str:
        return self.loan.case_id


def desk_loan(tag: str, portfolio: str, **overrides: Any) -> LoanOverdue:
    """The default test loan (30,800.00 owed, 45 days past due as of now), for a portfolio with
    no policy of its own (the default policy, real clock)."""
    now = datetime.now(UTC)
    loan_id = f"L-desk-{tag}-{uuid.uuid4().hex[:6]}"
    dpd = overrides.pop("days_past_due", 45)
    return factories.loan(
        event_id=f"{loan_id}-overdue-1",
        occurred_at=now,
        loan_id=loan_id,
        borrower_id=f"b-{loan_id}",
        days_past_due=dpd,
        delinquent_since=(now - timedelta(days=dpd)).date(),
        portfolio=portfolio,
        **overrides,
    )


def tight_budget() -> Any:
    """The one plan that fits waives interest and cuts the rate: a team lead approves it."""
    return factories.profile(
        hardship_reason=None,
        temporary=False,
        monthly_income=Decimal("8100.00"),
    )


def lump_sum_budget() -> Any:
    """A settlement of 20,000.00 for 30,800.00 owed: the credit committee approves it."""
    return factories.profile(
        monthly_income=Decimal("5000.00"), lump_sum_available=Decimal("20000.00")
    )


async def open_cases(
    settings: Settings, client: Client, loans: list[LoanOverdue]
) -> list[DeskCase]:
    async with EventProducer(settings) as producer:
        await producer.send_events(settings.kafka.topics.overdue, loans)
    return [DeskCase(loan, CaseHandle(client, loan.case_id)) for loan in loans]


async def waiting_for_approval(case: DeskCase, profile: Any) -> CaseView:
    """The borrower's finances are in; options wait for approval."""
    await view_when(case.handle, lambda v: bool(v.contact_log), within=60, what="contacted")
    await act(case.handle, SubmitFinancials(profile=profile))
    return await view_when(
        case.handle,
        lambda v: v.stage is CaseStage.PROPOSE and v.approval is not None,
        within=60,
        what="options waiting for approval",
    )
