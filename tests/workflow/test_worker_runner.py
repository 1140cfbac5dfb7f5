"""The worker's workflow runner answers the payload contexts of a case outside the sandbox
(``worker.CaseWorkflowRunner``): its answers must be the ones the SDK's sandboxed instance gives."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.worker import WorkflowInstance, WorkflowInstanceDetails
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from engine.actions import SubmitFinancials
from schemas.case import CaseStage
from tests.workflow.conftest import profile
from worker import PASSED_THROUGH, CaseWorkflowRunner

pytestmark = pytest.mark.workflow


class _Compared(WorkflowInstance):
    """Answers as the runner under test does, and records the SDK's own answer beside it."""

    def __init__(self, tested: WorkflowInstance, sdk: WorkflowInstance, seen: list[Any]) -> None:
        self._tested, self._sdk, self._seen = tested, sdk, seen

    def activate(self, act: Any) -> Any:
        return self._tested.activate(act)

    def get_serialization_context(self, command_info: Any) -> Any:
        answer = self._tested.get_serialization_context(command_info)
        if command_info is None:
            self._seen.append(("serialization", answer, self._sdk.get_serialization_context(None)))
        return answer

    def get_external_store_context(self, command_info: Any) -> Any:
        answer = self._tested.get_external_store_context(command_info)
        if command_info is None:
            self._seen.append(("store", answer, self._sdk.get_external_store_context(None)))
        return answer

    def get_info(self) -> Any:
        return self._tested.get_info()

    def get_thread_id(self) -> int | None:
        return self._tested.get_thread_id()


class _ComparingRunner(CaseWorkflowRunner):
    def __init__(self) -> None:
        super().__init__(
            restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSED_THROUGH)
        )
        self.seen: list[Any] = []

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        sdk = SandboxedWorkflowRunner.create_instance(self, det)  # never activated: asked only
        return _Compared(super().create_instance(det), sdk, self.seen)


async def test_the_runner_answers_every_payload_context_as_the_sandboxed_workflow_would(
    new_case,
) -> None:
    runner = _ComparingRunner()
    case = await new_case(workflow_runner=runner)
    await case.start()
    await case.until(lambda v: v.contact_log, "first contact")  # the start input, queries
    await case.act(SubmitFinancials(profile=profile()))  # an update
    await case.until(lambda v: v.stage is CaseStage.PROPOSE, "an offer")
    await case.pay("10.00", "runner")  # a signal

    assert runner.seen, "no payload asked for its context"
    for kind, answer, sdk_answer in runner.seen:
        assert answer == sdk_answer, kind
