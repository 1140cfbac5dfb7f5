"""The desk's HTTP API, directly: every action is refused without a valid session or token, and
above the signed-in role's authority; a team lead approves within theirs. And the list follows
payments: a case's DaysPastDue and OutstandingAmount change after a payment on Kafka, and a
list filter sees the change."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from temporalio.client import Client

from engine.balance import amount_band
from schemas.events import LoanPayment, PaymentChannel
from schemas.staff import Actor, StaffRole
from settings import Settings
from stack.orchestrator import Stack
from staff.credentials import sign_session
from staff.keys import signing_key
from tests.integration.desk_support import (
    api_token,
    desk,  # noqa: F401 - the fixture
    desk_loan,
    lump_sum_budget,
    open_cases,
    tight_budget,
    waiting_for_approval,
)
from tests.integration.services_support import eventually, view_when
from tests.integration.streams_support import EventProducer
from workflows import search_attributes as sa

pytestmark = pytest.mark.integration

EVERY_ACTION = [
    {"action": "approve", "option_ids": ["restructure_12m"]},
    {"action": "reject", "option_ids": ["restructure_12m"]},
    {"action": "pause"},
    {"action": "resume"},
    {"action": "breathing_space"},
    {"action": "dispute"},
    {"action": "resolve_dispute", "upheld": False, "note": "checked"},
    {"action": "note", "text": "called"},
    {"action": "assign", "assignee": "tl-1"},
    {"action": "retry"},
    {"action": "submit_financials", "profile": {}},
    {"action": "choose_option", "option_id": "restructure_12m"},
    {"action": "counter_propose", "profile": {}},
    {"action": "decline"},
    {"action": "sign", "envelope_id": "env-1"},
    {"action": "situation_changed", "profile": {}},
]


@pytest.fixture(scope="module")
def portfolio() -> str:
    return f"desk-api-{uuid.uuid4().hex[:6]}"


async def test_every_action_needs_a_valid_session_or_token(
    desk: Stack,  # noqa: F811
    stack_settings: Settings,
) -> None:
    case_id = "case-L-anything-20260101"
    stranger = sign_session(
        Ed25519PrivateKey.generate(),  # a key the desk never had
        Actor(staff_id="tl-1", role=StaffRole.TEAM_LEAD),
        datetime.now(UTC),
        timedelta(hours=1),
        "password",
    )
    expired = sign_session(
        signing_key(stack_settings),
        Actor(staff_id="tl-1", role=StaffRole.TEAM_LEAD),
        datetime.now(UTC) - timedelta(days=2),
        timedelta(hours=1),
        "password",
    )
    removed = sign_session(  # signed by the desk, for an account it does not have
        signing_key(stack_settings),
        Actor(staff_id="gone-1", role=StaffRole.CREDIT_COMMITTEE),
        datetime.now(UTC),
        timedelta(hours=1),
        "password",
    )
    async with httpx.AsyncClient(base_url=stack_settings.desk.url, timeout=10) as client:
        for document in EVERY_ACTION:
            url = f"/api/cases/{case_id}/actions"
            for headers in (
                {},
                {"Authorization": "Bearer not-a-token"},
                {"Authorization": f"Bearer {stranger}"},
                {"Authorization": f"Bearer {expired}"},
                {"Authorization": f"Bearer {removed}"},
                {"Authorization": f"Basic {stranger}"},
            ):
                answer = await client.post(url, json=document, headers=headers)
                assert answer.status_code == 401, (document, headers, answer.text)
                assert answer.json()["error"]["code"] == "unauthorised"
            # The page's form: no session cookie, no action.
            form = {k: str(v) for k, v in document.items() if not isinstance(v, dict | list)}
            answer = await client.post(f"/cases/{case_id}/act", data=form)
            assert answer.status_code == 401, (document, answer.text)
        # Reads need a session too.
        assert (await client.get("/api/cases")).status_code == 401
        assert (await client.get(f"/api/cases/{case_id}")).status_code == 401
        page = await client.get("/cases")
        assert page.status_code == 303 and page.headers["location"].startswith("/login")


async def test_approval_within_the_role_and_never_above_it(
    desk: Stack,  # noqa: F811
    stack_settings: Settings,
    temporal_client: Client,
    portfolio: str,
) -> None:
    waiver, settlement = await open_cases(
        stack_settings,
        temporal_client,
        [desk_loan("tl", portfolio), desk_loan("cc", portfolio, days_past_due=150)],
    )
    lead_view = await waiting_for_approval(waiver, tight_budget())
    committee_view = await waiting_for_approval(settlement, lump_sum_budget())
    assert lead_view.approval is not None and committee_view.approval is not None
    assert lead_view.approval.required.value == "team_lead"
    committee_options = [
        o.option_id
        for o in committee_view.proposal.offered  # type: ignore[union-attr]
        if o.required_authority.value == "credit_committee"
    ]
    assert committee_options, "the settlement needs the committee"

    agent = {"Authorization": f"Bearer {await api_token(stack_settings, 'ag-1')}"}
    lead = {"Authorization": f"Bearer {await api_token(stack_settings, 'tl-1')}"}
    async with httpx.AsyncClient(base_url=stack_settings.desk.url, timeout=30) as client:

        async def post(case_id: str, document: dict, headers: dict) -> httpx.Response:
            return await client.post(
                f"/api/cases/{case_id}/actions", json=document, headers=headers
            )

        approve_waiver = {"action": "approve", "option_ids": list(lead_view.approval.option_ids)}
        # An agent's role approves nothing.
        answer = await post(waiver.case_id, approve_waiver, agent)
        assert answer.status_code == 403, answer.text
        assert "needs team_lead authority; ag-1 (agent) has automatic" in answer.text
        # A team lead cannot approve what needs the committee, whatever the body says.
        above = {
            "action": "approve",
            "option_ids": committee_options,
            "authority": "credit_committee",
        }
        answer = await post(settlement.case_id, above, lead)
        assert answer.status_code == 403, answer.text
        assert "needs credit_committee authority; tl-1 (team_lead) has team_lead" in answer.text
        # Nor act in someone else's name, nor bring a credential of their own.
        answer = await post(waiver.case_id, {**approve_waiver, "approver_id": "cc-1"}, lead)
        assert answer.status_code == 403 and "signed in as tl-1" in answer.text
        answer = await post(waiver.case_id, {**approve_waiver, "credential": "x.y.z"}, lead)
        assert answer.status_code == 422
        # Within the role's authority: applied, and recorded with the authenticated staff id.
        answer = await post(waiver.case_id, approve_waiver, lead)
        assert answer.status_code == 200, answer.text
        assert answer.json()["stage"] == "propose"
        audit = await waiver.handle.audit()
        approved = [d for d in audit.decisions if d.kind == "approved"]
        assert approved[-1].by == "tl-1" and approved[-1].summary[0] == "tl-1"
        # A refusal that is about the case, not the person, is a 409 with the case's reason.
        answer = await post(waiver.case_id, approve_waiver, lead)
        assert answer.status_code == 409
        assert (
            answer.json()["error"]["message"] == "refused: approve: nothing is waiting for approval"
        )
        # No such case.
        answer = await post("case-NOPE-20200101", {"action": "note", "text": "x"}, lead)
        assert answer.status_code == 404 and "no case case-NOPE-20200101" in answer.text

        # The queue "awaiting my approval" is by authority.
        queue = await client.get("/api/cases?queue=awaiting-my-approval", headers=lead)
        listed = {row["case_id"] for row in queue.json()["cases"]}
        assert settlement.case_id not in listed
        agent_queue = await client.get("/api/cases?queue=awaiting-my-approval", headers=agent)
        assert agent_queue.json()["cases"] == []


async def test_the_list_follows_payments(
    desk: Stack,  # noqa: F811
    stack_settings: Settings,
    temporal_client: Client,
) -> None:
    portfolio = f"desk-pay-{uuid.uuid4().hex[:6]}"
    (case,) = await open_cases(stack_settings, temporal_client, [desk_loan("pay", portfolio)])
    loan = case.loan
    view = await view_when(case.handle, lambda v: bool(v.contact_log), within=60, what="open")
    assert view.balance is not None
    token = await api_token(stack_settings, "tl-1")
    headers = {"Authorization": f"Bearer {token}"}

    async def listed(**filters: object) -> set[str]:
        async with httpx.AsyncClient(base_url=stack_settings.desk.url, timeout=10) as client:
            answer = await client.get(
                "/api/cases", params={"portfolio": portfolio, **filters}, headers=headers
            )
        assert answer.status_code == 200, answer.text
        return {row["case_id"] for row in answer.json()["cases"]}

    async def attributes() -> dict:
        described = await temporal_client.get_workflow_handle(case.case_id).describe()
        typed = described.typed_search_attributes
        return {"dpd": typed.get(sa.DAYS_PAST_DUE), "outstanding": typed.get(sa.OUTSTANDING_AMOUNT)}

    (before,) = await eventually(
        lambda: _when(attributes(), lambda a: a["dpd"] is not None and a["dpd"] >= 45),
        within=30,
        what="the opening attributes",
    )
    assert before["outstanding"] == amount_band(loan.total_outstanding) == 20000
    await eventually(
        lambda: _when(listed(dpd_over=40), lambda ids: case.case_id in ids),
        within=30,
        what="the case in the list of more than 40 days past due",
    )

    # The borrower pays the arrears and then some: nothing overdue, less than 20,000 owed.
    paid = loan.overdue_amount + Decimal("10000.00")
    now = datetime.now(UTC)
    async with EventProducer(stack_settings) as producer:
        await producer.send_events(
            stack_settings.kafka.topics.payment,
            [
                LoanPayment(
                    event_id=f"{loan.loan_id}-pay-1",
                    occurred_at=now,
                    schema_version=1,
                    loan_id=loan.loan_id,
                    currency=loan.currency,
                    amount=paid,
                    paid_at=now,
                    channel=PaymentChannel.MOBILE_APP,
                )
            ],
        )
    (after,) = await eventually(
        lambda: _when(attributes(), lambda a: a["dpd"] == 0),
        within=60,
        what="DaysPastDue after the payment",
    )
    assert after["outstanding"] == amount_band(loan.total_outstanding - paid) == 10000
    await eventually(
        lambda: _when(listed(dpd_over=40), lambda ids: case.case_id not in ids),
        within=30,
        what="the case out of the list of more than 40 days past due",
    )
    assert case.case_id in await listed(dpd_upto=0, outstanding_from=10000)
    assert case.case_id not in await listed(outstanding_from=20000)
    shown = await case.handle.view()
    assert shown.balance is not None and shown.balance.arrears == 0
    assert shown.balance.outstanding == loan.total_outstanding - paid


async def _when(value, ready):  # type: ignore[no-untyped-def]
    """``value`` once ``ready(value)``, else None ("not yet" for ``eventually``)."""
    result = await value
    return (result,) if ready(result) else None
