"""Helpers of the tests on the whole stack with its embedded services: cases driven by what a
borrower and operations staff do (updates, the e-signature page, payments on Kafka), and
waiting on the case's own view (never sleeps as synchronisation)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TypeVar

import httpx
from pydantic import TypeAdapter
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError

from engine.actions import (
    Accepted,
    CaseAction,
    ChooseOption,
    Reject,
    SubmitFinancials,
    named_staff,
)
from schemas.case import CaseStage, CaseView
from schemas.events import LoanOverdue, LoanPayment, PaymentChannel, ProductType
from schemas.http.core_banking import Restructure
from schemas.plan import ApprovalAuthority
from schemas.staff import Actor, StaffRole
from settings import Settings
from simulate.signing import NoEnvelopeYet, act_on_signing_page
from simulate.timescale import policy_now
from stack.orchestrator import Health, Stack
from staff.credentials import sign_action
from staff.keys import signing_key
from tests.factories import profile
from tests.integration.streams_support import DEADLINE_SLACK, EventProducer
from workflows.handle import CaseHandle

T = TypeVar("T")
ActionT = TypeVar("ActionT", bound=CaseAction)
RESTRUCTURES = TypeAdapter(list[Restructure])
NOT_YET = ("no offer is open yet", "try again shortly", "only in stage")
STAFF = "ops-test-1"


def overdue(loan_id: str, *, occurred_at: datetime | None = None) -> LoanOverdue:
    """An overdue loan the default policy offers automatic plans for."""
    at = occurred_at or datetime.now(UTC)
    return LoanOverdue(
        event_id=f"{loan_id}-overdue-1",
        occurred_at=at,
        schema_version=1,
        loan_id=loan_id,
        borrower_id=f"b-{loan_id}",
        product=ProductType.PERSONAL_LOAN,
        currency="CNY",
        principal_outstanding=Decimal("10000.00"),
        interest_outstanding=Decimal("120.50"),
        penalty_interest_outstanding=Decimal("10.00"),
        fees_outstanding=Decimal("0.00"),
        overdue_amount=Decimal("900.00"),
        days_past_due=20,
        delinquent_since=(at - timedelta(days=20)).date(),
        contractual_instalment=Decimal("900.00"),
        remaining_term_months=12,
        annual_interest_rate=Decimal("0.0435"),
    )


async def all_healthy(stack: Stack) -> bool | None:
    """For ``eventually``: every component of the stack reports healthy."""
    statuses = await stack.status()
    return True if all(s.health is Health.HEALTHY for s in statuses) else None


async def eventually(
    attempt: Callable[[], Awaitable[T | None]], *, within: float, what: str, poll: float = 0.3
) -> T:
    """``attempt()`` until it returns something other than None (errors count as "not yet")."""
    allowed = within * DEADLINE_SLACK
    deadline = time.monotonic() + allowed
    last = "no result"
    while True:
        try:
            result = await attempt()
            if result is not None:
                return result
        except (RPCError, httpx.HTTPError, NoEnvelopeYet, WorkflowUpdateFailedError) as error:
            last = f"{type(error).__name__}: {error}"
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {allowed:.0f}s waiting for {what} ({last})")
        await asyncio.sleep(poll)


async def view_when(
    handle: CaseHandle,
    ready: Callable[[CaseView], bool],
    *,
    within: float,
    what: str,
) -> CaseView:
    async def look() -> CaseView | None:
        view = await handle.view()
        return view if ready(view) else None

    return await eventually(look, within=within, what=f"{handle.case_id}: {what}")


async def act(handle: CaseHandle, action: CaseAction) -> Accepted:
    """An action; refusals that mean "not yet" are tried again until it is taken."""

    async def attempt() -> Accepted | None:
        try:
            return await handle.act(action)
        except WorkflowUpdateFailedError as error:
            reason = str(error.cause) if error.cause else str(error)
            if any(text in reason for text in NOT_YET):
                return None
            raise

    return await eventually(attempt, within=60, what=f"{handle.case_id}: {action.action} taken")


class CaseDriver:
    """Moves one case forward as its borrower and operations staff would."""

    def __init__(self, client: Client, settings: Settings, loan: LoanOverdue) -> None:
        self.settings = settings
        self.loan = loan
        self.handle = CaseHandle(client, loan.case_id)

    async def view(self) -> CaseView:
        return await self.handle.view()

    async def answer_contact(self) -> CaseView:
        """Once the bank asked (first contact), the borrower sends their finances."""
        await view_when(self.handle, lambda v: bool(v.contact_log), within=60, what="contacted")
        await act(
            self.handle, SubmitFinancials(profile=profile(monthly_income=Decimal("20000.00")))
        )
        return await view_when(
            self.handle, lambda v: v.stage is not CaseStage.COLLECT_INFO, within=60, what="assessed"
        )

    async def choose_plan(self) -> CaseView:
        """Operations reject what needs approval; the borrower takes the best automatic plan."""
        view = await view_when(
            self.handle, lambda v: v.proposal is not None, within=60, what="proposal"
        )
        assert view.proposal is not None
        needing = [
            o.option_id
            for o in view.proposal.offered
            if o.required_authority is not ApprovalAuthority.AUTOMATIC
        ]
        if needing:
            try:
                reject = Reject(
                    option_ids=tuple(needing), approver_id=STAFF, reason="NOT_NEEDED_IN_TEST"
                )
                await act(self.handle, as_admin(self.settings, reject, self.loan.case_id))
            except WorkflowUpdateFailedError as error:
                if "waiting for approval" not in str(error.cause):
                    raise  # else: settled already (e.g. the approval SLA lapsed)
        best = min(
            (o for o in view.proposal.offered if o.option_id not in needing), key=lambda o: o.rank
        )
        await act(self.handle, ChooseOption(option_id=best.option_id))
        return await view_when(
            self.handle,
            lambda v: v.stage is CaseStage.SIGN and v.agreement is not None,
            within=60,
            what="agreement to sign",
        )

    async def sign(self) -> CaseView:
        """The borrower signs on the e-signature service's page; the case reaches track."""
        view = await self.view()
        assert view.agreement is not None
        agreement_id = view.agreement.agreement_id

        async def signed() -> str | None:
            return await act_on_signing_page(self.settings, agreement_id)

        await eventually(signed, within=60, what=f"envelope of {agreement_id} signed")
        return await view_when(
            self.handle, lambda v: v.stage is CaseStage.TRACK, within=90, what="track"
        )

    async def pay_first_instalment(self, producer: EventProducer) -> None:
        """Paid now, on the case's own clock (a compressed case's dates run ahead)."""
        view = await self.view()
        assert view.schedule
        first = view.schedule[0].instalment
        paid_at = policy_now(view.opened_at, datetime.now(UTC), view.time_scale)
        payment = LoanPayment(
            event_id=f"{self.loan.loan_id}-pay-1",
            occurred_at=paid_at,
            schema_version=1,
            loan_id=self.loan.loan_id,
            currency="CNY",
            amount=first.amount,
            paid_at=paid_at,
            channel=PaymentChannel.MOBILE_APP,
        )
        await producer.send_events(self.settings.kafka.topics.payment, [payment])


def as_admin(settings: Settings, action: ActionT, case_id: str) -> ActionT:
    """``action`` signed for the staff member it names as an administrator, with the stack's
    staff key (as `accord case --admin` signs)."""
    actor = Actor(staff_id=named_staff(action) or STAFF, role=StaffRole.ADMINISTRATOR)
    credential = sign_action(
        signing_key(settings), actor, case_id, action, datetime.now(UTC), timedelta(minutes=5)
    )
    return action.model_copy(update={"credential": credential})


async def restructures(settings: Settings) -> list[Restructure]:
    """Every restructure in the core-banking service's loan book."""
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.get(f"{settings.core_banking.url}/v1/restructures")
    answer.raise_for_status()
    return RESTRUCTURES.validate_json(answer.content)
