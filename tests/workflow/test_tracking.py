"""Paths through the tracking stage: misses, broken plans, re-assessment, cure, and a plan long
enough to continue-as-new."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

import pytest

from engine.actions import ChooseOption, Retry, SituationChanged, SubmitFinancials
from schemas.case import CaseOutcome, CaseStage, CheckpointKind, InstalmentStatus
from tests.workflow.conftest import overdue_event, profile

pytestmark = pytest.mark.workflow


def stages(audit) -> list[CaseStage]:
    return [change.stage for change in audit.stages]


def enough_income():
    return profile(monthly_income=Decimal("14000.00"))


async def test_one_missed_instalment_recovered(new_case) -> None:
    case = await new_case(overdue_event(remaining_term_months=12))
    await case.start()
    await case.to_tracking(enough_income(), "restructure_12m")
    view = await case.view()
    third, fourth = (view.schedule[i].instalment.amount for i in (2, 3))
    await case.pay_every_instalment({3: Decimal(0), 4: third + fourth})
    view = await case.finish("missed_instalment_recovered")

    assert view.outcome is CaseOutcome.CURED
    assert all(t.status is InstalmentStatus.PAID for t in view.schedule)
    missed = [e for e in case.events() if e.kind == "instalment_missed"]
    assert [(e.number, e.consecutive_missed) for e in missed] == [(3, 1)]
    paid = [e.number for e in case.events() if e.kind == "instalment_paid"]
    assert sorted(paid) == list(range(1, 13)) and paid.index(3) < paid.index(4)
    # The missed instalment drew a reminder.
    kinds = case.kinds()
    assert kinds[kinds.index("instalment_missed") + 1] == "contacted"


async def test_broken_plan_reassessed_into_a_new_plan(new_case) -> None:
    case = await new_case(overdue_event(remaining_term_months=12))
    await case.start()
    await case.to_tracking(enough_income(), "restructure_12m")
    view = await case.view()
    await case.pay(str(view.schedule[0].instalment.amount), "i1")
    await case.skip_past_checkpoint(3)  # instalments 2 and 3 unpaid: the default clause
    await case.until(lambda v: v.stage is CaseStage.COLLECT_INFO, "re-collection")

    # Poorer now (no capacity to pay the old plan): a broken plan makes the case severe, and a
    # longer plan is offered. (With capacity, the broken promise would be wilful: legal.)
    await case.act(SubmitFinancials(profile=profile()))
    view = await case.until_offer()
    await case.act(ChooseOption(option_id=view.proposal.offered[0].option_id))
    await case.sign_when_asked()
    await case.pay_every_instalment()
    view = await case.finish("broken_plan_new_plan")

    assert view.outcome is CaseOutcome.CURED
    assert view.agreement is not None and view.agreement.agreement_id.endswith("-a2")
    audit = await case.audit()
    after_break = stages(audit)[stages(audit).index(CaseStage.COLLECT_INFO, 1) :]
    assert after_break[:5] == [
        CaseStage.COLLECT_INFO,
        CaseStage.ASSESS,
        CaseStage.PROPOSE,
        CaseStage.SIGN,
        CaseStage.TRACK,
    ]
    reassessed = [e for e in case.events() if e.kind == "reassessed"]
    assert "broken_plan" in [e.trigger for e in reassessed]
    assert [e.number for e in case.events() if e.kind == "instalment_missed"][:2] == [2, 3]
    assert case.kinds().count("signed") == 2
    assert len(case.core_banking.applied_count) == 2


async def test_situation_changed_mid_plan_goes_back_to_assess(new_case) -> None:
    case = await new_case()
    await case.start()
    await case.to_tracking(profile(), "extension_29m")
    view = await case.view()
    await case.pay(str(view.schedule[0].instalment.amount), "i1")
    await case.skip_past_checkpoint(1)

    worse = profile(monthly_income=Decimal("8800.00"), essential_expenses=Decimal("5000.00"))
    await case.act(SituationChanged(profile=worse))
    view = await case.until_offer()
    assert view.proposal is not None
    await case.act(ChooseOption(option_id=view.proposal.offered[0].option_id))
    await case.sign_when_asked()
    await case.status("cured")
    view = await case.finish("situation_changed")

    assert view.outcome is CaseOutcome.CURED
    reassessed = [e for e in case.events() if e.kind == "reassessed"]
    assert [e.trigger for e in reassessed] == ["borrower_request"]
    assert stages(await case.audit())[4:8] == [
        CaseStage.TRACK,
        CaseStage.ASSESS,
        CaseStage.PROPOSE,
        CaseStage.SIGN,
    ]


async def test_cure_event_mid_plan_closes_the_case(new_case) -> None:
    case = await new_case()
    await case.start()
    await case.to_tracking(profile())
    view = await case.view()
    await case.pay(str(view.schedule[0].instalment.amount), "i1")
    await case.skip_past_checkpoint(1)
    await case.status("cured")
    await case.status("cured")  # redelivered by Kafka: applied once
    view = await case.finish("cured_mid_plan")

    assert view.outcome is CaseOutcome.CURED
    assert view.outcome_reasons == ("LOAN_CURED",)
    assert case.kinds()[-2:] == ["instalment_paid", "closed"]
    applied = await case.cases.applied_event_ids()
    assert applied.count(f"st-{case.loan.loan_id}-cured") == 1


async def test_36_month_plan_continues_as_new_with_small_histories(new_case) -> None:
    case = await new_case(overdue_event(remaining_term_months=36))
    await case.start(continue_as_new_after_events=500)
    await case.to_tracking(enough_income(), "restructure_36m")
    view = await case.view()
    assert len(view.schedule) == 36
    await case.pay_every_instalment()
    view = await case.finish("plan_36_months")

    assert view.outcome is CaseOutcome.CURED
    assert all(t.status is InstalmentStatus.PAID for t in view.schedule)
    histories = await case.histories()
    assert len(histories) >= 2
    total_events = sum(len(h.events) for h in histories)
    assert total_events < 10_000
    assert all(len(h.events) < 1_000 for h in histories)
    audit = await case.audit()
    assert audit.run_count == len(histories)
    assert case.kinds().count("instalment_paid") == 36


def _scheduled_activities(histories) -> set[str]:
    return {
        event.activity_task_scheduled_event_attributes.activity_type.name
        for history in histories
        for event in history.events
        if event.HasField("activity_task_scheduled_event_attributes")
    }


async def test_a_checkpoint_reads_the_ledger_and_publishes_within_its_timers_task(
    new_case_on_own_server,
) -> None:
    """``workflows.case.LOCAL_CALLS_PATCH``: the ledger read and the case events are local
    activities, so a checkpoint's firing is one workflow task; a refused read asks a human."""
    case = await new_case_on_own_server(overdue_event(remaining_term_months=12))
    await case.start()
    await case.to_tracking(enough_income(), "restructure_12m")
    view = await case.view()
    await case.pay(str(view.schedule[0].instalment.amount), "i1")
    await case.skip_past_checkpoint(1)
    await case.until(lambda v: v.schedule[0].status is InstalmentStatus.PAID, "first paid")

    case.core_banking.faults.permanent.add("read_ledger")  # refused: no retry helps
    await case.skip_past_checkpoint(2)
    view = await case.until(lambda v: v.attention is not None, "attention")
    assert view.attention is not None and view.attention.reason == "SYSTEM_REJECTED"
    assert view.stage is CaseStage.TRACK

    case.core_banking.faults.permanent.clear()
    await case.act(Retry(staff_id="staff-4", note="ledger repaired"))
    await case.until(lambda v: v.schedule[1].status is InstalmentStatus.MISSED, "second missed")
    await case.status("cured")
    view = await case.finish("local_calls")

    assert view.outcome is CaseOutcome.CURED
    kinds = case.kinds()
    assert kinds.count("instalment_paid") == 1 and kinds.count("instalment_missed") == 1
    assert case.core_banking.faults.calls["read_ledger"] >= 3
    scheduled = _scheduled_activities(await case.histories())
    assert "read_ledger" not in scheduled and "publish_case_events" not in scheduled
    assert "apply_restructure" in scheduled  # the other systems' calls stay activities


async def test_an_outage_at_a_checkpoint_is_waited_out_by_activities(
    new_case_on_own_server,
) -> None:
    """Core banking and Kafka both down when a checkpoint falls due: after ``LOCAL_TRIES``
    local tries the ledger read, then the publish, go on as activities (no timer per retry in
    the history), and the checkpoint completes once each system is back."""
    case = await new_case_on_own_server(overdue_event(remaining_term_months=12))
    await case.start()
    await case.to_tracking(enough_income(), "restructure_12m")
    view = await case.view()
    await case.pay(str(view.schedule[0].instalment.amount), "i1")
    checkpoint = view.next_checkpoint
    assert checkpoint is not None and checkpoint.kind is CheckpointKind.INSTALMENT_DUE
    case.core_banking.faults.down = True
    case.publisher.faults.down = True
    # Up to the checkpoint only: the local tries take real seconds, which a time-skipping sleep
    # across them would wait out past its RPC timeout.
    await case.skip(checkpoint.at - await case.now() - timedelta(seconds=2))
    await _until_scheduled(case, "read_ledger")
    await case.skip(timedelta(hours=3))
    view = await case.view()
    assert view.schedule[0].status is InstalmentStatus.SCHEDULED  # undecided without the ledger
    timers_in_outage = _timers_started(await case.histories())

    case.core_banking.faults.down = False
    await case.skip(timedelta(minutes=11))  # the activity's next retry, at most 10 minutes later
    await case.until(lambda v: v.schedule[0].status is InstalmentStatus.PAID, "first paid")
    assert "instalment_paid" not in case.kinds()  # Kafka still down
    await _until_scheduled(case, "publish_case_events")
    case.publisher.faults.down = False
    await case.skip(timedelta(minutes=2))  # the publish's next retry, at most a minute later
    await case.status("cured")
    view = await case.finish(None)

    assert view.outcome is CaseOutcome.CURED
    assert case.kinds().count("instalment_paid") == 1
    histories = await case.histories()
    assert {"read_ledger", "publish_case_events"} <= _scheduled_activities(histories)
    # Three hours of retries added no timer (a local activity's retries past a minute would).
    assert _timers_started(histories) <= timers_in_outage + 2
    assert case.core_banking.faults.calls["read_ledger"] >= 5


def _timers_started(histories) -> int:
    return sum(
        1
        for history in histories
        for event in history.events
        if event.HasField("timer_started_event_attributes")
    )


async def _until_scheduled(case, activity: str) -> None:
    """Poll the history (real time, no skipping) until ``activity`` is scheduled as an activity."""
    deadline = asyncio.get_running_loop().time() + 60
    while activity not in _scheduled_activities(await case.histories()):
        assert asyncio.get_running_loop().time() < deadline, f"{activity} never scheduled"
        await asyncio.sleep(0.1)


async def test_a_payment_keeps_the_checkpoints_timer(new_case) -> None:
    """The kept timer (``workflows.case.ONE_MARKER_PATCH``): a payment that leaves the next
    checkpoint where it was starts no timer and cancels none; the checkpoint then fires on the
    timer it had."""
    case = await new_case(overdue_event(remaining_term_months=12))
    await case.start()
    await case.to_tracking(enough_income(), "restructure_12m")
    view = await case.view()
    checkpoint = view.next_checkpoint
    assert checkpoint is not None and checkpoint.kind is CheckpointKind.INSTALMENT_DUE
    assert view.balance is not None
    paid = view.balance.paid_since_basis
    before = _timer_events(await case.histories())

    for suffix in ("a", "b"):
        await case.pay("10.00", suffix)
    view = await case.until(
        lambda v: v.balance is not None and v.balance.paid_since_basis == paid + 20,
        "both payments applied",
    )
    assert view.next_checkpoint == checkpoint
    assert _timer_events(await case.histories()) == before

    full = view.schedule[0].instalment.amount - Decimal("20.00")
    await case.pay(str(full), "c")
    await case.skip_past_checkpoint(1)
    view = await case.until(lambda v: v.schedule[0].status is InstalmentStatus.PAID, "first paid")
    assert view.next_checkpoint is not None and view.next_checkpoint.at > checkpoint.at


def _timer_events(histories) -> tuple[int, int]:
    """Timers started and cancelled over the case's runs."""
    events = [event for history in histories for event in history.events]
    return (
        sum(1 for event in events if event.HasField("timer_started_event_attributes")),
        sum(1 for event in events if event.HasField("timer_canceled_event_attributes")),
    )
