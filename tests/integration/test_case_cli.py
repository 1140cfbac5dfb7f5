"""`accord case`: operations staff steer a live case; a bad action is refused with a reason."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy

from settings import Settings
from tests.integration.streams_support import (
    accord,
    case_worker,
    create_topics,
    new_tag,
    overdue_event,
    streams_test_settings,
    wait_until,
)
from workflows.case import CaseWorkflow
from workflows.messages import CaseStart

pytestmark = pytest.mark.integration


async def test_staff_actions_on_a_live_case(
    stack_settings: Settings, temporal_client: Client, tmp_path: Path
) -> None:
    settings = streams_test_settings(stack_settings, new_tag())
    await create_topics(settings)  # the worker publishes case events
    event = overdue_event(f"L-CLI-{new_tag()}", "evt-cli-1")
    async with case_worker(settings, tmp_path):
        await temporal_client.start_workflow(
            CaseWorkflow.run,
            CaseStart(loan_id=event.loan_id, delinquent_since=event.delinquent_since),
            id=event.case_id,
            task_queue=settings.temporal.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            start_signal="overdue",
            start_signal_args=[event],
        )

        handle = temporal_client.get_workflow_handle(event.case_id)

        async def first_task_completed() -> bool:
            history = await handle.fetch_history()
            return any(
                e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED for e in history.events
            )

        # Updates are refused while the first workflow task is still failing or retrying.
        await wait_until(first_task_completed, within=60, what="the case's first workflow task")

        noted = accord(settings, "case", "note", event.case_id, "--author", "S-17", "called")
        assert noted.returncode == 0, noted.stderr

        async def note_recorded() -> bool:
            return any(n.text == "called" for n in (await handle.query(CaseWorkflow.audit)).notes)

        await wait_until(note_recorded, within=30, what="the note in the case audit")

        # Approving in collect_info does not fit the stage: refused, with the case's reason.
        refused = accord(
            settings, "case", "approve", event.case_id, "term_extension_12",
            "--staff", "S-17", "--authority", "team_lead",
        )  # fmt: skip
        assert refused.returncode == 1
        assert "refused" in refused.stderr and "collect_info" in refused.stderr

        malformed = accord(
            settings, "case", "approve", event.case_id, "Not An Option",
            "--staff", "S-17", "--authority", "team_lead",
        )  # fmt: skip
        assert malformed.returncode == 1 and "option_ids.0" in malformed.stderr

        shown = accord(settings, "case", "show", event.case_id)
        assert shown.returncode == 0, shown.stderr
        assert f'"case_id": "{event.case_id}"' in shown.stdout

    missing = accord(settings, "case", "show", "case-NOPE-20200101")
    assert missing.returncode == 1 and "no case case-NOPE-20200101" in missing.stderr
