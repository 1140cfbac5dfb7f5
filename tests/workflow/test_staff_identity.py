"""Staff actions are authenticated by the case itself: the credential is verified in the update
validator (no credential, a forged or copied one, another staff id, or too little authority is
refused with the reason), and every action is recorded with the authenticated staff id. And the
search attributes follow what happens: a payment changes days past due and the banded amounts."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from temporalio.client import WorkflowUpdateFailedError

from engine.actions import Approve, ChooseOption, Note, Pause, Resume, SubmitFinancials
from engine.balance import amount_band
from schemas.case import CaseOutcome, CaseStage
from schemas.staff import Actor, StaffRole
from staff.credentials import sign_action
from tests.staff_keys import TEST_KEY, signed
from tests.workflow.conftest import overdue_event, profile
from tests.workflow.test_negotiation import tight_budget
from workflows import search_attributes as sa

pytestmark = pytest.mark.workflow


async def refused(case, action) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as error:
        await case.cases.act(action)
    return str(error.value.cause)


async def test_staff_actions_need_a_valid_credential_and_the_authority(new_case) -> None:
    case = await new_case()
    await case.start()
    await case.until(lambda v: v.contact_log, "first contact")
    await case.act(SubmitFinancials(profile=tight_budget()))
    view = await case.until(lambda v: v.approval is not None, "options waiting for approval")
    assert view.approval is not None and view.proposal is not None
    needing = view.approval.option_ids
    committee = [
        o.option_id for o in view.proposal.offered if o.required_authority == "credit_committee"
    ]
    team_lead = [o.option_id for o in view.proposal.offered if o.required_authority == "team_lead"]
    assert team_lead, "the tight budget needs a team lead's approval"
    now = await case.now()

    note = Note(author_id="tl-1", text="called the borrower")
    assert "needs a signed-in staff member" in await refused(case, note)
    forged = signed(note, case.case_id, now, key=Ed25519PrivateKey.generate())
    assert "signature does not verify" in await refused(case, forged)
    other_case = signed(note, "case-OTHER-20260101", now)
    assert "signed for another case" in await refused(case, other_case)
    other_text = signed(note, case.case_id, now).model_copy(update={"text": "approved it all"})
    assert "signed for another action" in await refused(case, other_text)
    expired = signed(note, case.case_id, now - timedelta(hours=1))
    assert "expired" in await refused(case, expired)
    impersonated = signed(note, case.case_id, now, staff_id="cc-1")
    assert "names tl-1, but the signed-in staff member is cc-1" in await refused(case, impersonated)
    # The authority a caller types is ignored: the role the desk signed decides.
    if committee:
        above = Approve(
            option_ids=tuple(committee), approver_id="tl-1", authority="credit_committee"
        )
        reason = await refused(case, signed(above, case.case_id, now, StaffRole.TEAM_LEAD))
        assert "needs credit_committee authority; tl-1 (team_lead) has team_lead" in reason

    await case.cases.act(signed(note, case.case_id, now, StaffRole.TEAM_LEAD))
    approve = Approve(option_ids=tuple(team_lead), approver_id="tl-1")
    await case.cases.act(signed(approve, case.case_id, now, StaffRole.TEAM_LEAD))
    view = await case.until_offer()  # (no activity left running when the test ends)
    assert all(view.approved_by[option_id] == "tl-1" for option_id in team_lead)

    audit = await case.audit()
    approved = [d for d in audit.decisions if d.kind == "approved"]
    assert approved and approved[-1].by == "tl-1"
    assert [n.author_id for n in audit.notes] == ["tl-1"]
    assert set(needing) >= set(team_lead)
    await case.h.terminate("test over")


async def test_search_attributes_follow_payments(new_case) -> None:
    loan = overdue_event()
    case = await new_case(loan)
    await case.start()
    view = await case.until(lambda v: v.contact_log, "first contact")
    assert view.balance is not None and view.balance.basis == "loan"
    before = await case.attributes()
    assert before.get(sa.DAYS_PAST_DUE) == view.balance.days_past_due >= 45
    assert before.get(sa.ARREARS_AMOUNT) == amount_band(loan.overdue_amount) == 2000
    assert before.get(sa.OUTSTANDING_AMOUNT) == amount_band(loan.total_outstanding) == 20000

    # One contractual instalment paid: a month less overdue, the arrears down by it.
    await case.pay(str(loan.contractual_instalment), "p1")
    view = await case.until(
        lambda v: v.balance is not None and v.balance.paid_since_basis > 0, "the payment counted"
    )
    assert view.balance is not None
    assert view.balance.arrears == loan.overdue_amount - loan.contractual_instalment
    after = await case.attributes()
    assert after.get(sa.DAYS_PAST_DUE) == view.balance.days_past_due
    assert 0 < view.balance.days_past_due <= before.get(sa.DAYS_PAST_DUE) - 28
    assert after.get(sa.ARREARS_AMOUNT) == 1000

    # The rest of the arrears: nothing overdue any more.
    rest = loan.overdue_amount - loan.contractual_instalment
    await case.pay(str(rest), "p2")
    view = await case.until(
        lambda v: v.balance is not None and v.balance.arrears == 0, "the arrears paid"
    )
    cleared = await case.attributes()
    assert cleared.get(sa.DAYS_PAST_DUE) == 0
    assert cleared.get(sa.ARREARS_AMOUNT) == 0
    assert cleared.get(sa.OVERDUE_SINCE) is None
    await case.h.terminate("test over")


async def test_holds_assignment_and_approval_are_searchable(new_case) -> None:
    """The desk's queues filter on these; the history is saved (the desk's attribute shape)."""
    case = await new_case()
    await case.start()
    await case.until(lambda v: v.contact_log, "first contact")
    await case.act(SubmitFinancials(profile=tight_budget()))
    view = await case.until(lambda v: v.approval is not None, "options waiting for approval")
    assert view.approval is not None
    attributes = await case.attributes()
    assert attributes.get(sa.AWAITING_APPROVAL) == [
        a for a in ("team_lead", "credit_committee") if a in _needed(view)
    ]
    now = await case.now()
    lead = Actor(staff_id="tl-1", role=StaffRole.TEAM_LEAD)
    pause = Pause(staff_id="tl-1")
    credential = sign_action(TEST_KEY, lead, case.case_id, pause, now, timedelta(minutes=5))
    await case.cases.act(pause.model_copy(update={"credential": credential}))
    assert (await case.attributes()).get(sa.CASE_HOLDS) == ["pause"]
    await case.act(Resume(staff_id="tl-1"))
    assert (await case.attributes()).get(sa.CASE_HOLDS) is None
    approve = Approve(option_ids=view.approval.option_ids, approver_id="cc-1")
    await case.act(signed(approve, case.case_id, now, StaffRole.CREDIT_COMMITTEE))
    await case.until_offer()
    assert (await case.attributes()).get(sa.AWAITING_APPROVAL) is None
    offered = (await case.view()).proposal
    assert offered is not None
    await case.act(ChooseOption(option_id=offered.offered[0].option_id))
    await case.sign_when_asked()
    await case.status("cured")
    view = await case.finish("desk_attributes")
    assert view.outcome is CaseOutcome.CURED
    final = await case.attributes()
    assert final.get(sa.CASE_STAGE) == CaseStage.CLOSED.value
    assert final.get(sa.CASE_OUTCOME) == "cured"
    assert final.get(sa.PRODUCT_TYPE) == "personal_loan"


def _needed(view) -> set[str]:
    assert view.proposal is not None and view.approval is not None
    return {
        o.required_authority.value
        for o in view.proposal.offered
        if o.option_id in view.approval.option_ids
    }


def test_profile_amounts_survive_the_round_trip_a_credential_is_bound_to() -> None:
    """The desk signs the action it built; the case checks the one it decoded: same bytes."""
    action = SubmitFinancials(profile=profile(monthly_income=Decimal("14000.5")))
    decoded = SubmitFinancials.model_validate_json(action.model_dump_json())
    assert decoded.signed_content() == action.signed_content()
