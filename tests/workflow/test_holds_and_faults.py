"""Dispute, breathing space, and core banking failing: the case waits, nothing is lost or
doubled."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.client import WorkflowUpdateFailedError

from decisions.local_days import local_date, start_of_day
from engine.actions import (
    Decline,
    Dispute,
    Note,
    ResolveDispute,
    Resume,
    StartBreathingSpace,
    SubmitFinancials,
)
from schemas.case import CaseOutcome, CaseStage
from tests.workflow.conftest import profile

pytestmark = pytest.mark.workflow


async def test_dispute_pauses_the_case_until_reviewed(new_case) -> None:
    case = await new_case()
    await case.start()
    await case.until(lambda v: v.contact_log, "first contact")
    await case.act(Dispute(raised_by="agent-3"))
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await case.act(Dispute(raised_by="agent-3"))
    assert "already disputed" in str(refused.value.cause)
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await case.act(Resume(staff_id="staff-1"))
    assert "use resolve_dispute" in str(refused.value.cause)

    await case.skip(timedelta(days=30))  # far beyond the 14-day information deadline
    view = await case.view()
    assert view.stage is CaseStage.COLLECT_INFO and view.holds.disputed
    assert len(view.contact_log) == 1  # no contact while disputed
    assert view.next_checkpoint is None  # only a human lifts a dispute

    await case.act(
        ResolveDispute(staff_id="staff-1", upheld=False, note="debt confirmed with the ledger")
    )
    await case.act(SubmitFinancials(profile=profile()))
    await case.until_offer()
    await case.act(Note(author_id="staff-1", text="called back"))
    await case.act(Decline())
    view = await case.finish("dispute_pause_resume")

    assert view.outcome is CaseOutcome.DECLINED
    kinds = case.kinds()
    assert kinds[:4] == ["opened", "contacted", "paused", "resumed"]
    paused = next(e for e in case.events() if e.kind == "paused")
    assert paused.reason == "dispute" and paused.until is None
    audit = await case.audit()
    assert [n.text for n in audit.notes] == ["debt confirmed with the ledger", "called back"]


async def test_breathing_space_pauses_contact_and_timers_for_its_60_days(new_case) -> None:
    case = await new_case()
    await case.start()
    await case.to_tracking(profile(), "extension_29m")
    await case.act(StartBreathingSpace(staff_id="staff-2"))
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await case.act(Resume(staff_id="staff-2"))
    assert "ends by itself" in str(refused.value.cause)
    contacts_before = len((await case.view()).contact_log)

    await case.skip(timedelta(days=45))  # instalment 1 falls due inside the breathing space
    view = await case.view()
    assert view.holds.breathing_space_until is not None
    assert len(view.contact_log) == contacts_before
    assert "instalment_missed" not in case.kinds()

    await case.skip(timedelta(days=16))  # the breathing space has ended
    await case.until(lambda v: v.holds.breathing_space_until is None, "breathing space over")
    view = await case.view()
    await case.pay(str(view.schedule[0].instalment.amount), "i1")
    await case.skip(timedelta(days=40))  # the first checkpoint, moved by the 60 days
    await case.until(lambda _: "instalment_paid" in case.kinds(), "first instalment paid")
    await case.status("cured")
    view = await case.finish("breathing_space")

    assert view.outcome is CaseOutcome.CURED
    kinds = case.kinds()
    assert kinds.index("paused") < kinds.index("resumed") < kinds.index("instalment_paid")
    assert "instalment_missed" not in kinds
    paused = next(e for e in case.events() if e.kind == "paused")
    assert paused.reason == "breathing_space"
    # From the day after it was recorded (the register entry) for 60 borrower-local days.
    zone = view.time_zone or "UTC"
    first_day = local_date(paused.occurred_at, zone) + timedelta(days=1)
    assert paused.until == start_of_day(first_day + timedelta(days=60), zone)


async def test_core_banking_down_for_hours_then_flaky_restructure(new_case) -> None:
    case = await new_case()
    case.core_banking.faults.down = True
    await case.start()
    await case.skip(timedelta(hours=3))
    view = await case.view()
    assert view.stage is CaseStage.COLLECT_INFO and case.kinds() == []
    assert case.core_banking.faults.calls["read_loan"] > 5  # retried, not failed

    case.core_banking.faults.down = False
    # The restructure fails twice, then takes effect but its answer is lost.
    case.core_banking.faults.transient["apply_restructure"] = 2
    case.core_banking.faults.lose_response_once.add("apply_restructure")
    await case.skip(timedelta(minutes=11))  # the next retry, at most 10 minutes later
    await case.to_tracking(profile(), "extension_29m")
    await case.status("cured")
    view = await case.finish("core_banking_outage")

    assert view.outcome is CaseOutcome.CURED
    assert case.core_banking.faults.calls["apply_restructure"] == 4
    assert list(case.core_banking.applied_count.values()) == [1]
    assert case.kinds()[0] == "opened" and case.kinds().count("signed") == 1


async def test_upheld_dispute_closes_the_case(new_case) -> None:
    case = await new_case()
    await case.start()
    await case.to_tracking(profile())
    await case.act(Dispute(raised_by="agent-3", reason="NOT_MY_LOAN"))
    await case.act(ResolveDispute(staff_id="staff-9", upheld=True, note="identity fraud confirmed"))
    view = await case.finish("dispute_upheld")

    assert view.outcome is CaseOutcome.WRITTEN_OFF
    assert view.outcome_reasons == ("DISPUTE_UPHELD",)
    assert case.kinds()[-2:] == ["paused", "closed"]
