"""`accord case`: operations staff steer a live case; a bad action is refused with a reason."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.service import RPCError

from settings import Settings
from tests.integration.streams_support import (
    EventProducer,
    accord,
    case_worker,
    create_topics,
    new_tag,
    overdue_event,
    streams_test_settings,
    wait_until,
)
from workflows.handle import CaseHandle, open_case

pytestmark = pytest.mark.integration


async def test_staff_actions_on_a_live_case(
    stack_settings: Settings, temporal_client: Client, tmp_path: Path
) -> None:
    settings = streams_test_settings(stack_settings, new_tag())
    await create_topics(settings)  # the worker publishes case events
    event = overdue_event(f"L-CLI-{new_tag()}", "evt-cli-1")
    async with case_worker(settings, tmp_path), EventProducer(settings) as producer:
        # Core banking learns its loans from the feed; the case is opened here directly.
        await producer.send_events(settings.kafka.topics.overdue, [event])
        await open_case(temporal_client, event, task_queue=settings.temporal.task_queue)
        handle = CaseHandle(temporal_client, event.case_id)

        async def opened() -> bool:
            with contextlib.suppress(RPCError):
                return bool((await handle.audit()).stages)
            return False

        # Actions are refused ("still opening") until core banking has confirmed the loan.
        await wait_until(opened, within=60, what="the case to open")

        # No staff token and no administrator named: refused before anything is sent.
        anonymous = accord(settings, "case", "note", event.case_id, "called")
        assert anonymous.returncode == 1 and "not signed in: `accord login`" in anonymous.stderr
        noted = accord(settings, "case", "--admin", "S-17", "note", event.case_id, "called")
        assert noted.returncode == 0, noted.stderr

        async def note_recorded() -> bool:
            return any(n.text == "called" for n in (await handle.audit()).notes)

        await wait_until(note_recorded, within=30, what="the note in the case audit")

        # Approving in collect_info does not fit the stage: refused, with the case's reason.
        refused = accord(
            settings, "case", "--admin", "S-17", "approve", event.case_id, "term_extension_12"
        )
        assert refused.returncode == 1
        assert "refused" in refused.stderr and "collect_info" in refused.stderr

        malformed = accord(
            settings, "case", "--admin", "S-17", "approve", event.case_id, "Not An Option"
        )
        assert malformed.returncode == 1 and "option_ids.0" in malformed.stderr

        shown = accord(settings, "case", "show", event.case_id, "--json")
        assert shown.returncode == 0, shown.stderr
        assert f'"case_id": "{event.case_id}"' in shown.stdout
        summary = accord(settings, "case", "show", event.case_id)
        assert summary.returncode == 0, summary.stderr
        assert summary.stdout.startswith(f"{event.case_id}  stage collect_info")
        assert len(summary.stdout.splitlines()) < 25

    missing = accord(settings, "case", "show", "case-NOPE-20200101")
    assert missing.returncode == 1 and "no case case-NOPE-20200101" in missing.stderr
