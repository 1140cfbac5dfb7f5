"""`accord simulate` runs against the stack without changing it: afterwards an ordinary overdue
event is handled on the real clock under the default policy, every component still runs as
before (same processes, no restarts), `accord stack status` is green, and no simulated case
has failed."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from clients import connect_temporal
from decisions.policy import load_policy
from schemas.case import CaseView
from settings import Settings
from stack.environment import child_env
from stack.orchestrator import Health, Stack
from tests.integration.services_support import overdue, view_when
from tests.integration.streams_support import REPO_ROOT, EventProducer
from workflows.handle import CaseHandle

pytestmark = pytest.mark.integration
SEED = 7


async def accord(settings: Settings, *args: str, within: float) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli.main", *args,
        cwd=REPO_ROOT,
        env=child_env(settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), within)
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


@pytest.fixture(scope="module")
async def simulated(
    settings_factory: Callable[..., Settings],
) -> AsyncIterator[tuple[Stack, Client, dict[str, tuple[int | None, int]]]]:
    stack = Stack(settings_factory())
    try:
        await stack.up()
        before = {s.name: (s.pid, s.restarts) for s in await stack.status()}
        code, output = await accord(
            stack.settings,
            "simulate", "--loans", "20", "--duration", "60", "--seed", str(SEED), "--no-audit",
            within=300,
        )  # fmt: skip
        assert code == 0, output
        yield stack, await connect_temporal(stack.settings), before
    finally:
        await stack.down()


async def simulated_cases(client: Client) -> list[tuple[str, WorkflowExecutionStatus | None]]:
    found = []
    async for execution in client.list_workflows(f'WorkflowId STARTS_WITH "case-S{SEED}-"'):
        found.append((execution.id, execution.status))
    return found


async def test_an_ordinary_case_after_a_simulation_runs_on_the_default_policy(
    simulated: tuple[Stack, Client, dict[str, tuple[int | None, int]]],
) -> None:
    stack, client, before = simulated
    loan = overdue(f"L-after-sim-{uuid.uuid4().hex[:6]}")
    async with EventProducer(stack.settings) as producer:
        await producer.send_events(stack.settings.kafka.topics.overdue, [loan])
    handle = CaseHandle(client, loan.case_id)

    view: CaseView = await view_when(
        handle, lambda v: bool(v.contact_log), within=60, what="opened and contacted"
    )

    default = load_policy()
    assert view.policy_version == default.version
    assert view.time_scale == 1
    assert view.next_checkpoint is not None
    # The first reminder is days away on the real clock (compressed, it would be seconds).
    first_reminder = timedelta(days=default.durations.info_reminder_days[0])
    assert view.next_checkpoint.at - datetime.now(UTC) > first_reminder - timedelta(minutes=5)

    after = {s.name: s for s in await stack.status()}
    assert all(s.health is Health.HEALTHY for s in after.values()), after
    assert {name: (s.pid, s.restarts) for name, s in after.items()} == before
    code, output = await accord(stack.settings, "stack", "status", within=60)
    assert code == 0, output

    cases = await simulated_cases(client)
    assert len(cases) == 20
    failed = [case for case, status in cases if status is WorkflowExecutionStatus.FAILED]
    assert failed == []


async def test_simulated_cases_run_on_the_simulation_portfolio_policy(
    simulated: tuple[Stack, Client, dict[str, tuple[int | None, int]]],
) -> None:
    _, client, _ = simulated
    case_id = (await simulated_cases(client))[0][0]
    view = await CaseHandle(client, case_id).view()
    assert view.time_scale > 1
    assert "+sim" in view.policy_version
