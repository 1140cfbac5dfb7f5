"""The replay check must be able to fail: a deliberately non-deterministic change to the case
workflow (one timer more before its first step) does not replay a saved history."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from clients import PYDANTIC_CONVERTER
from engine.state import CaseStart
from schemas.case import CaseView
from workflows.case import CaseWorkflow

pytestmark = pytest.mark.workflow

HISTORY = Path(__file__).parent / "histories" / "cooperative_12_month_plan.json"


@workflow.defn(name="CaseWorkflow", sandboxed=False)
class CaseWorkflowWithAnExtraTimer(CaseWorkflow):
    @workflow.run
    async def run(self, start: CaseStart) -> CaseView:
        await workflow.sleep(1)
        return await super().run(start)


async def test_a_non_deterministic_change_fails_the_replay() -> None:
    history = WorkflowHistory.from_json("guard", json.loads(HISTORY.read_text()))
    replayer = Replayer(
        workflows=[CaseWorkflowWithAnExtraTimer],
        data_converter=PYDANTIC_CONVERTER,
    )
    with pytest.raises(workflow.NondeterminismError):
        await replayer.replay_workflow(history)
