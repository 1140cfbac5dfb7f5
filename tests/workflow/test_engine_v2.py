"""Scenarios the first case workflow got wrong, on the time-skipping server: decline while an
agreement is out for signature, an update accepted at the continue-as-new boundary, a breathing
space started inside a dispute, a failing decision, a whole case on a worker that caches
nothing (every workflow task a full replay), and a query and a signal racing a case's first
workflow task."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from temporalio import activity
from temporalio.bridge.proto.workflow_activation import WorkflowActivation
from temporalio.bridge.proto.workflow_completion import WorkflowActivationCompletion
from temporalio.worker import Replayer, WorkflowInstance, WorkflowInstanceDetails

from clients import PYDANTIC_CONVERTER
from decisions.policy import Policy, load_policy
from engine.actions import (
    ChooseOption,
    Decline,
    Dispute,
    ResolveDispute,
    Retry,
    SituationChanged,
    StartBreathingSpace,
    SubmitFinancials,
)
from schemas.case import CaseOutcome, CaseStage, CheckpointKind
from tests.workflow.conftest import DelegatingInstance, overdue_event, profile
from worker import CASE_SANDBOX, LATE_LOCAL_RESULT, CaseWorkflowRunner, case_workflow_runner
from workflows.case import CaseWorkflow

pytestmark = pytest.mark.workflow


def daytime_zone() -> str:
    """A time zone where it is around noon now."""
    offset = (12 - datetime.now(UTC).hour + 12) % 24 - 12
    return f"Etc/GMT{-offset:+d}" if offset else "Etc/GMT"


async def test_decline_while_signing_closes_the_case(new_case) -> None:
    case = await new_case()
    await case.start()
    await case.until(lambda v: v.contact_log, "first contact")
    await case.act(SubmitFinancials(profile=profile()))
    view = await case.until_offer()
    assert view.proposal is not None
    await case.act(ChooseOption(option_id=view.proposal.offered[0].option_id))
    view = await case.until(
        lambda v: v.stage is CaseStage.SIGN and v.envelope_id is not None, "out for signature"
    )
    await case.act(Decline())
    view = await case.finish("decline_while_signing")

    assert view.outcome is CaseOutcome.DECLINED
    envelope = case.esign.envelopes[view.envelope_id or next(iter(case.esign.envelopes))]
    assert envelope.state == "voided"
    assert "signature_status" not in case.esign.faults.calls  # no confirmation loop


async def test_situation_changed_at_the_continue_as_new_boundary_is_kept(new_live_case) -> None:
    # On the real dev server, in real time (nothing here waits for a timer).
    case = await new_live_case(overdue_event(remaining_term_months=12))
    case.directory.default_time_zone = daytime_zone()  # no quiet hours in the way
    # Continue-as-new at every idle moment after 40 history events: runs end all along.
    await case.start(continue_as_new_after_events=40, align=False)
    await case.to_tracking(
        profile(monthly_income=Decimal("14000.00")), "restructure_12m", settle=False
    )
    await case.act(SituationChanged(profile=profile(monthly_income=Decimal("13000.00"))))
    view = await case.until(lambda v: v.stage is CaseStage.PROPOSE, "re-proposal")
    audit = await case.audit()
    assert audit.run_count > 1
    assert "reassessed" in case.kinds()
    await case.status("cured")
    view = await case.finish(None)  # how many runs depends on timing: nothing to save
    assert view.outcome is CaseOutcome.CURED


async def test_breathing_space_inside_a_dispute_ends_by_itself(new_case) -> None:
    case = await new_case()
    await case.start()
    await case.to_tracking(profile(), "extension_29m")
    await case.act(Dispute(raised_by="agent-3"))
    await case.act(StartBreathingSpace(staff_id="staff-2"))
    await case.act(ResolveDispute(staff_id="staff-1", upheld=False, note="debt confirmed"))
    view = await case.view()
    assert view.holds.breathing_space_until is not None and not view.holds.disputed
    assert view.next_checkpoint is not None
    assert view.next_checkpoint.kind is CheckpointKind.HOLD_ENDS

    await case.skip(timedelta(days=61))
    view = await case.until(lambda v: v.holds.breathing_space_until is None, "breathing ends")
    assert view.next_checkpoint is not None
    assert view.next_checkpoint.kind is not CheckpointKind.HOLD_ENDS
    await case.status("cured")
    view = await case.finish("breathing_space_inside_dispute")
    assert view.outcome is CaseOutcome.CURED
    assert case.kinds().count("resumed") == 1


async def test_failing_decision_waits_for_a_human_and_retries(new_case) -> None:
    case = await new_case()
    await case.start()
    await case.until(lambda v: v.contact_log, "first contact")
    case.core_banking.faults.permanent.add("read_loan")  # refused: no retry helps
    await case.act(SubmitFinancials(profile=profile()))
    view = await case.until(lambda v: v.attention is not None, "attention")
    assert view.attention is not None and view.attention.reason == "SYSTEM_REJECTED"
    assert view.stage is CaseStage.ASSESS

    case.core_banking.faults.permanent.clear()
    await case.act(Retry(staff_id="staff-4", note="loan record repaired"))
    await case.until_offer()
    await case.status("cured")
    view = await case.finish("attention_then_retry")
    assert view.outcome is CaseOutcome.CURED


async def test_a_broken_policy_waits_for_a_human_instead_of_failing_the_case(
    new_case, tmp_path: Path
) -> None:
    broken = tmp_path / "policy.toml"
    broken.write_text('version = "broken"\n[durations\n')
    case = await new_case(policy_file=broken)
    await case.start()
    view = await case.until(lambda v: v.attention is not None, "attention")
    assert view.attention is not None and view.attention.reason == "POLICY_ERROR"
    # Still running: it takes an operator's retry (and, the file unchanged, waits again).
    await case.act(Retry(staff_id="staff-4", note="policy file checked"))
    view = await case.until(lambda v: v.attention is not None, "attention again")
    assert view.attention is not None and view.attention.reason == "POLICY_ERROR"


async def test_a_whole_case_on_a_worker_that_caches_nothing(new_case) -> None:
    case = await new_case(overdue_event(remaining_term_months=12), max_cached_workflows=0)
    await case.start()
    await case.to_tracking(profile(monthly_income=Decimal("14000.00")), "restructure_12m")
    await case.pay_every_instalment()
    view = await case.finish("evicted_every_task")
    assert view.outcome is CaseOutcome.CURED
    assert all(tracked.status == "paid" for tracked in view.schedule)


async def test_a_local_activitys_late_result_is_never_applied_after_a_signal(
    new_live_case,
) -> None:
    """The race that left a cured case no query could read (CI, 1 December), set up step by
    step: the case's first task carries a query (asked before any worker polled) and loads the
    policy with a local activity; the activity finishes while the workflow answers the query,
    and the loan is cured meanwhile. The SDK core then completes the task with the activity's
    marker before the workflow has seen its result, and the next task brings that result
    together with the cure, which the SDK applies first; a replay applies the result first.
    Before ``worker._late_local_result`` the run went on with the cure first and every replay
    failed ("Missing associated machine for LocalActivity(2)"). Now the worker fails that task
    once, and its retry replays the history before it applies the cure."""
    query_answering, policy_asked, cured, policy_returned = (threading.Event() for _ in range(4))

    class HoldingQueries(CaseWorkflowRunner):
        """Holds the workflow's answer to a query until the policy has been returned."""

        def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
            return _HoldQueries(super().create_instance(det), query_answering, policy_returned)

    @activity.defn(name="load_policy")
    async def policy_once_cured(portfolio: str | None = None) -> Policy:
        policy_asked.set()
        loop = asyncio.get_running_loop()
        for step in (query_answering, cured):
            assert await loop.run_in_executor(None, step.wait, WAIT), "the race was not set up"
        policy_returned.set()
        return load_policy()

    case = await new_live_case(
        run_worker=False,
        replaced_activities=[policy_once_cured],
        workflow_runner=HoldingQueries(restrictions=CASE_SANDBOX),
    )
    await case.start(align=False)
    early_query = asyncio.create_task(case.cases.applied_event_ids())
    await case.h.describe()  # a round trip on the same connection: the query is on its way
    await case.run_worker()
    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(None, policy_asked.wait, WAIT)
    await case.status("cured")
    cured.set()
    assert await early_query == [case.loan.event_id]
    view = await case.until(lambda v: v.outcome is CaseOutcome.CURED, "cured")

    (history,) = await case.histories()
    failures = [
        event.workflow_task_failed_event_attributes.failure.message
        for event in history.events
        if event.HasField("workflow_task_failed_event_attributes")
    ]
    assert failures == [LATE_LOCAL_RESULT]
    replayer = Replayer(
        workflows=[CaseWorkflow],
        workflow_runner=case_workflow_runner(),
        data_converter=PYDANTIC_CONVERTER,
    )
    await replayer.replay_workflow(history)
    assert sorted(await case.cases.applied_event_ids()) == sorted(
        [case.loan.event_id, f"st-{case.loan.loan_id}-cured"]
    )
    assert view.stage is CaseStage.CLOSED


WAIT = 20.0
"""Seconds a step of the race waits for the one before it."""


class _HoldQueries(DelegatingInstance):
    def __init__(
        self, inner: WorkflowInstance, answering: threading.Event, returned: threading.Event
    ) -> None:
        super().__init__(inner)
        self._answering, self._returned = answering, returned

    def activate(self, act: WorkflowActivation) -> WorkflowActivationCompletion:
        completion = super().activate(act)
        if any(job.HasField("query_workflow") for job in act.jobs):
            self._answering.set()
            self._returned.wait(WAIT)
            # The activity's result is on its way to the core, which must take it before this
            # answer: no event tells when it has. (The race needs it, not the assertions; the
            # SDK allows an activation 2 s.)
            time.sleep(0.5)
        return completion
