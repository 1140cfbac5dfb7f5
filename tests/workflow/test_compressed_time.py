"""Compressed policy time for simulations: one policy day per server second. A 12-month plan
runs on the case's own clock (due dates, contact rules, checkpoints) while the server's timers
fire 86,400 times sooner; cases opened before the clock existed replay unchanged
(``test_replay.py``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from engine.actions import ChooseOption, Sign, SubmitFinancials
from schemas.case import CaseOutcome, CaseStage, InstalmentStatus
from simulate.timescale import policy_now, server_time, write_compressed_policy
from tests.workflow.conftest import overdue_event, profile, replay_with_task_times_moved

pytestmark = pytest.mark.workflow

ONE_SECOND_PER_DAY = Decimal(1)


async def test_a_12_month_plan_plays_out_in_server_minutes(new_case, tmp_path) -> None:
    policy = write_compressed_policy(None, tmp_path / "policy.toml", ONE_SECOND_PER_DAY)
    assert policy.time_scale == 86_400
    case = await new_case(overdue_event(remaining_term_months=12), policy_file=policy.path)
    await case.start()
    view = await case.until(lambda v: v.contact_log, "first contact")
    assert view.time_scale == 86_400
    opened = view.opened_at

    async def policy_time() -> datetime:
        return policy_now(opened, await case.now(), policy.time_scale)

    async def skip_to(moment: datetime) -> None:
        server_moment = server_time(opened, moment, policy.time_scale)
        now = await case.now()
        if server_moment > now:
            await case.skip(server_moment - now)

    await case.act(SubmitFinancials(profile=profile(monthly_income=Decimal("14000.00"))))
    view = await case.until_offer()
    assert view.proposal is not None
    twelve = view.proposal.option("restructure_12m")
    await case.act(ChooseOption(option_id=twelve.option_id))
    view = await case.until(
        lambda v: v.stage is CaseStage.SIGN and v.envelope_id is not None, "out for signature"
    )
    envelope_id = view.envelope_id
    assert envelope_id is not None
    case.esign.borrower_signs(envelope_id, datetime.now(UTC))  # the vendor's wall clock
    await case.act(Sign(envelope_id=envelope_id))
    view = await case.until(lambda v: v.stage is CaseStage.TRACK, "tracking")
    # Signed on the case's clock, not the vendor's: the schedule starts from there.
    assert view.agreement is not None and view.agreement.issued_at > opened

    for tracked in view.schedule:
        due = datetime.combine(tracked.instalment.due_date, datetime.min.time(), UTC)
        await skip_to(due + timedelta(hours=10))
        await case.pay(
            str(tracked.instalment.amount), f"i{tracked.instalment.number}", await policy_time()
        )
    last_payment_server_time = await case.now()
    view = await case.finish("compressed_12_month_plan")

    assert view.outcome is CaseOutcome.CURED
    assert all(t.status is InstalmentStatus.PAID for t in view.schedule)
    assert len(view.schedule) == 12
    assert view.closed_at is not None
    # About 13 policy months from opening to close (30 days to the first due date, eleven
    # more months, grace): all of it in well under ten server minutes.
    assert view.closed_at - opened > timedelta(days=360)
    # (the case's anchor, ``opened``, is the same moment on both clocks)
    assert last_payment_server_time - opened < timedelta(minutes=10)
    # Periodic re-assessments (every 90 policy days) happened on the compressed clock too.
    assert [e.trigger for e in case.events() if e.kind == "reassessed"] == ["periodic"] * 4


async def test_the_server_clock_is_kept_without_a_time_scale(new_case) -> None:
    case = await new_case()
    await case.start()
    view = await case.until(lambda v: v.next_checkpoint is not None, "a checkpoint")
    assert view.time_scale == 1
    # The first reminder is three real days out.
    assert view.next_checkpoint is not None
    reminder_in = view.next_checkpoint.at - await case.now()
    assert timedelta(days=2, hours=23) < reminder_in <= timedelta(days=3)
    await case.h.terminate("test over")


async def test_a_replay_that_sees_a_task_start_after_midnight_decides_the_same(
    new_case, tmp_path
) -> None:
    """A worker replaying after a restart reads the task times the server recorded, which can
    be a fraction of a second later than the time the original task ran with: here a payment's
    task ran late in the evening of the case's clock, and its replay sees it just after
    midnight, when the case is one more day past due. The replay must issue the same commands
    (whether the days past due are written is not decided by the clock)."""
    policy = write_compressed_policy(None, tmp_path / "policy.toml", ONE_SECOND_PER_DAY)
    case = await new_case(overdue_event(), policy_file=policy.path)
    await case.start()
    view = await case.until(lambda v: v.contact_log, "first contact")
    opened = view.opened_at

    def on_case_clock(server_moment: datetime) -> datetime:
        return policy_now(opened, server_moment, policy.time_scale)

    def next_midnight(server_moment: datetime) -> datetime:
        day = on_case_clock(server_moment).date() + timedelta(days=1)
        midnight = datetime.combine(day, datetime.min.time(), UTC)
        return server_time(opened, midnight, policy.time_scale)

    # Two small payments late in one evening of the case's clock (they move no amount band:
    # nothing else in the case's search attributes changes with them); the second one's task
    # is seen just after midnight by the replay, the first one's as it was.
    midnight = next_midnight(next_midnight(await case.now()))
    for number, before in enumerate((timedelta(seconds=0.2), timedelta(seconds=0.02)), 1):
        await case.skip(midnight - before - await case.now())
        await case.pay("1.00", f"small-{number}", on_case_clock(await case.now()))
        await case.until(
            lambda v, n=number: v.balance is not None and v.balance.paid_since_basis == n,
            f"payment {number} applied",
        )

    moved: list[datetime] = []

    def just_after_midnight(started: datetime) -> datetime:
        if timedelta(0) < midnight - started < timedelta(seconds=0.05):
            moved.append(started)
            return midnight + timedelta(seconds=0.05)
        return started

    (history,) = await case.histories()
    await replay_with_task_times_moved(history, just_after_midnight)
    assert moved, "no task started shortly before a midnight of the case's clock"
