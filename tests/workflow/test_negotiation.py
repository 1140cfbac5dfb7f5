"""Paths through collect_info, assess, propose and sign."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from temporalio.client import WorkflowUpdateFailedError

from engine.actions import Approve, ChooseOption, CounterPropose, Decline, Sign, SubmitFinancials
from schemas.assessment import CreditRecord, Tier
from schemas.case import CaseOutcome, CaseStage
from schemas.events import CustomerHardship
from schemas.plan import Lever
from schemas.staff import StaffRole
from tests.staff_keys import signed
from tests.workflow.conftest import overdue_event, profile
from workflows import search_attributes as sa

pytestmark = pytest.mark.workflow


def stages(audit) -> list[CaseStage]:
    return [change.stage for change in audit.stages]


async def test_non_responsive_borrower_is_escalated_after_the_deadline(new_case) -> None:
    case = await new_case()
    await case.start()
    view = await case.finish("non_responsive")

    assert view.outcome is CaseOutcome.ESCALATED_COLLECTIONS
    assert view.tier is Tier.NON_RESPONSIVE
    assert "NO_INFO_BY_DEADLINE" in view.outcome_reasons
    assert stages(await case.audit()) == [
        CaseStage.COLLECT_INFO,
        CaseStage.ASSESS,
        CaseStage.CLOSED,
    ]
    # First contact and one reminder per policy reminder day, up the channel ladder.
    assert [a.channel.value for a in view.contact_log] == ["sms", "email", "phone", "phone"]
    assert case.kinds() == ["opened", *["contacted"] * 4, "assessed", "closed"]


async def test_wilful_default_gets_the_strict_track_then_legal(new_case) -> None:
    # Capacity, and a plan broken before: the evidence of unwillingness lateness alone is not.
    case = await new_case(overdue_event(days_past_due=75), CreditRecord(broken_agreements=1))
    await case.start()
    await case.until(lambda v: v.contact_log, "first contact")
    rich = profile(
        hardship_reason=None,
        temporary=False,
        expected_recovery_months=None,
        monthly_income=Decimal("20000.00"),
        essential_expenses=Decimal("5000.00"),
        other_debt_payments=Decimal("0.00"),
    )
    await case.act(SubmitFinancials(profile=rich))
    view = await case.until_offer()
    assert view.tier is Tier.WILFUL
    assert "CAPACITY_WITHOUT_WILLINGNESS" in view.reasons
    assert view.proposal is not None
    # No concessions: only a short arrears spread.
    assert {o.levers for o in view.proposal.offered} == {(Lever.ARREARS_SPREAD,)}
    assert all(o.terms.waived == 0 for o in view.proposal.offered)

    view = await case.finish("wilful_default")  # ignores the offer
    assert view.outcome is CaseOutcome.ESCALATED_LEGAL
    assert view.outcome_reasons == ("WILFUL_DEFAULT", "NO_ANSWER_TO_OFFER")
    assert case.kinds()[-2:] == ["contacted", "closed"]


def tight_budget():
    """Affordable 700.00 a month on the default loan: the one plan that fits waives interest
    and cuts the rate, which needs a team lead."""
    return profile(
        hardship_reason=None,
        temporary=False,
        expected_recovery_months=None,
        monthly_income=Decimal("8100.00"),
    )


async def test_concession_above_authority_is_approved_then_chosen(new_case) -> None:
    case = await new_case()
    await case.start()
    await case.until(lambda v: v.contact_log, "first contact")
    await case.act(SubmitFinancials(profile=tight_budget()))
    await case.until(lambda v: v.stage is CaseStage.PROPOSE and v.proposal is not None, "options")
    view = await case.view()
    assert view.proposal is not None
    needing = [o.option_id for o in view.proposal.offered if o.required_authority != "automatic"]
    assert needing, "the concession needs a human"
    chosen = needing[0]

    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await case.act(ChooseOption(option_id=chosen))
    assert "no offer is open" in str(refused.value.cause)
    # An agent's role approves nothing, whatever the action says; a team lead's does.
    approve = Approve(option_ids=needing, approver_id="staff-1", authority="credit_committee")
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await case.act(signed(approve, case.case_id, await case.now(), StaffRole.AGENT))
    assert "needs team_lead authority; staff-1 (agent) has automatic" in str(refused.value.cause)

    approve = Approve(option_ids=needing, approver_id="staff-7")
    await case.act(signed(approve, case.case_id, await case.now(), StaffRole.TEAM_LEAD))
    await case.until_offer()
    await case.act(ChooseOption(option_id=chosen))
    await case.sign_when_asked()
    await case.status("cured")
    view = await case.finish("waiver_approved")

    assert view.outcome is CaseOutcome.CURED
    assert view.agreement is not None and view.agreement.terms.waived > 0
    approved = [e for e in case.events() if e.kind == "approved"]
    assert {e.option_id for e in approved} == set(needing)
    assert all(e.approved_by == "staff-7" for e in approved)
    proposed = next(e for e in case.events() if e.kind == "proposed")
    assert chosen in {o.option_id for o in proposed.options}


async def test_approval_sla_lapses_escalates_then_withdraws(new_case) -> None:
    case = await new_case()
    await case.start()
    await case.until(lambda v: v.contact_log, "first contact")
    await case.act(SubmitFinancials(profile=tight_budget()))
    await case.until(lambda v: v.stage is CaseStage.PROPOSE and v.proposal is not None, "options")
    await case.skip(timedelta(hours=49))
    audit = await case.audit()
    assert "approval_escalated" in [d.kind for d in audit.decisions]
    await case.skip(timedelta(hours=49))
    # Nobody approved the only plan that fits: withdrawn, nothing left to offer.
    view = await case.finish("approval_sla_lapsed")
    audit = await case.audit()
    assert "approval_lapsed" in [d.kind for d in audit.decisions]
    assert view.outcome is CaseOutcome.ESCALATED_COLLECTIONS
    assert view.outcome_reasons == ("NO_OPTION_AVAILABLE",)
    assert "approved" not in case.kinds() and "proposed" not in case.kinds()


async def test_signature_expires_then_reproposal_then_signature(new_case) -> None:
    case = await new_case()
    await case.start()
    await case.until(lambda v: v.contact_log, "first contact")
    await case.act(SubmitFinancials(profile=profile()))
    view = await case.until_offer()
    first_choice = view.proposal.offered[0].option_id
    await case.act(ChooseOption(option_id=first_choice))
    await case.until(lambda v: v.stage is CaseStage.SIGN and v.envelope_id is not None, "sign")
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await case.act(Sign(envelope_id="env-forged"))
    assert "not the envelope" in str(refused.value.cause)

    await case.skip(timedelta(days=11))  # the borrower never signs: the offer lapses
    view = await case.until_offer()
    await case.act(ChooseOption(option_id=first_choice))
    await case.sign_when_asked()
    view = await case.view()
    assert view.agreement is not None and view.agreement.agreement_id.endswith("-a2")
    await case.status("cured")
    view = await case.finish("signature_expired_then_signed")

    assert stages(await case.audit())[:7] == [
        CaseStage.COLLECT_INFO,
        CaseStage.ASSESS,
        CaseStage.PROPOSE,
        CaseStage.SIGN,
        CaseStage.PROPOSE,
        CaseStage.SIGN,
        CaseStage.TRACK,
    ]
    assert case.kinds().count("proposed") == 2
    assert case.kinds().count("signed") == 1
    assert list(case.core_banking.applied_count) == [view.agreement.agreement_id]


async def test_counter_proposals_are_limited_then_decline(new_case) -> None:
    case = await new_case()
    await case.start()
    await case.until(lambda v: v.contact_log, "first contact")
    await case.act(SubmitFinancials(profile=profile()))
    await case.until_offer()
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await case.act(SubmitFinancials(profile=profile()))
    assert "only in stage collect_info" in str(refused.value.cause)

    tighter = profile(other_debt_payments=Decimal("1100.00"))
    for round_number in (1, 2):
        await case.until_offer()
        await case.act(CounterPropose(profile=tighter, note=f"round {round_number}"))
        await case.until(lambda _, n=round_number: case.kinds().count("proposed") == n + 1, "new")
    await case.until_offer()
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await case.act(CounterPropose(profile=tighter))
    assert "limit of 2 counter-proposals" in str(refused.value.cause)
    await case.act(Decline(reason="BORROWER_DECLINED"))
    view = await case.finish("counter_proposals_then_decline")

    assert view.outcome is CaseOutcome.DECLINED
    reassessed = [e for e in case.events() if e.kind == "reassessed"]
    assert [e.trigger for e in reassessed] == ["borrower_request"] * 2
    assert stages(await case.audit()).count(CaseStage.PROPOSE) == 3


async def test_first_contact_waits_out_quiet_hours(new_case) -> None:
    # 23:00 in Shanghai (15:00 UTC): the rules forbid contact until 08:00 local.
    case = await new_case()
    now = await case.now()
    late_evening = now.replace(hour=15, minute=0, second=0, microsecond=0)
    if late_evening <= now:
        late_evening += timedelta(days=1)
    await case.skip(late_evening - now)
    await case.start(align=False)
    await case.skip(timedelta(hours=10))
    view = await case.until(lambda v: v.contact_log, "first contact")

    first = view.contact_log[0].at.astimezone(ZoneInfo("Asia/Shanghai"))
    assert 8 <= first.hour < 22
    audit = await case.audit()
    blocked = [d for d in audit.decisions if d.kind == "contact_blocked"]
    assert blocked and all("QUIET_HOURS" in d.summary[1] for d in blocked)
    assert all(d.contact_rules_version == "2026.2" for d in blocked)  # the cn-2026 pack
    await case.status("cured")
    view = await case.finish("quiet_hours_deferral")
    assert view.outcome is CaseOutcome.CURED


async def test_kafka_events_are_applied_once(new_case) -> None:
    case = await new_case()
    await case.start()
    await case.until(lambda v: v.contact_log, "first contact")
    await case.send(case.loan)  # redelivered start event
    later = case.loan.model_copy(
        update={"event_id": "ovd-day-2", "days_past_due": 46, "occurred_at": await case.now()}
    )
    hardship = CustomerHardship(
        event_id="hs-1",
        occurred_at=await case.now(),
        schema_version=1,
        loan_id=case.loan.loan_id,
        borrower_id=case.loan.borrower_id,
        currency="CNY",
        monthly_income=Decimal("9000.00"),
        essential_expenses=Decimal("5500.00"),
        other_debt_payments=Decimal("1200.00"),
        household_size=3,
        reason="income_reduction",
        temporary=True,
        expected_recovery_months=6,
    )
    for event in (later, hardship, hardship):
        await case.send(event)
    await case.until_offer()
    attributes = await case.attributes()
    assert attributes.get(sa.DAYS_PAST_DUE) == 46  # the newest overdue event wins
    await case.status("cured")
    view = await case.finish("kafka_events_once")

    assert view.outcome is CaseOutcome.CURED
    assert case.kinds().count("info_received") == 1
    applied = await case.cases.applied_event_ids()
    expected = [case.loan.event_id, "ovd-day-2", "hs-1", f"st-{case.loan.loan_id}-cured"]
    assert applied == sorted(expected)
