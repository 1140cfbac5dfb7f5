"""Every saved scenario history must replay on the current code: a non-deterministic change to
the workflow fails here. Regenerate deliberately with ``ACCORD_REGENERATE_HISTORIES=1``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from clients import PYDANTIC_CONVERTER
from tests.workflow.conftest import REGENERATE
from workflows.case import CaseWorkflow

pytestmark = pytest.mark.workflow

HISTORY_DIR = Path(__file__).parent / "histories"
HISTORIES = {path.stem: path.read_text() for path in sorted(HISTORY_DIR.glob("*.json"))}


def test_scenario_histories_are_saved() -> None:
    if REGENERATE:
        pytest.skip("regenerating the histories: they replay on the next run")
    # An empty directory would make the replay check pass vacuously.
    assert len(HISTORIES) >= 12


@pytest.mark.parametrize("name", sorted(HISTORIES))
async def test_history_replays(name: str) -> None:
    history = WorkflowHistory.from_json(name, json.loads(HISTORIES[name]))
    replayer = Replayer(workflows=[CaseWorkflow], data_converter=PYDANTIC_CONVERTER)
    await replayer.replay_workflow(history)
