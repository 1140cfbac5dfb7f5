"""Restarts lose nothing: with cases open in every stage, each component of the stack is killed
with SIGKILL in turn and restarted by supervision; afterwards every case goes on to its next
checkpoint, none has failed, and each signed agreement was applied exactly once in the
core-banking service's loan book."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import TypeVar

import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from clients import connect_temporal
from schemas.case import CaseStage, InstalmentStatus
from settings import Settings
from simulate.timescale import write_compressed_policy
from stack.orchestrator import COMPONENT_NAMES, Health, Stack
from tests.integration.services_support import CaseDriver, eventually, overdue, restructures
from tests.integration.streams_support import EventProducer

pytestmark = pytest.mark.integration
T = TypeVar("T")

CASES_PER_STAGE = 13  # collect_info, propose, sign, track: 52 cases
CONCURRENCY = 8
# Three seconds per policy day: the first instalment's checkpoint (30 days + 5 of grace) comes
# about 105 s after signing, while the components are being killed. Every other deadline is
# pushed out of the test's reach, so each case waits where it was put.
SECONDS_PER_POLICY_DAY = Decimal(3)
DURATIONS = {
    "info_deadline_days": 3000,
    "offer_response_days": 3000,
    "signature_expiry_days": 3000,
    "approval_sla_hours": 2160,
    "reassessment_interval_days": 3000,
}
KILL_ORDER = ("worker", "stream", "core-banking", "esign", "contact", "webhooks", "desk",
              "temporal", "kafka")  # fmt: skip


@pytest.fixture(scope="module")
async def restart_stack(settings_factory: Callable[..., Settings]) -> AsyncIterator[Stack]:
    base = settings_factory()
    policy = write_compressed_policy(
        None, base.data_dir / "restart-policy.toml", SECONDS_PER_POLICY_DAY, DURATIONS
    )
    stack = Stack(base.model_copy(update={"policy_file": policy.path.resolve()}))
    try:
        await stack.up()
        yield stack
    finally:
        await stack.down()


async def bounded(jobs: list[Callable[[], Awaitable[T]]]) -> list[T]:
    slots = asyncio.Semaphore(CONCURRENCY)

    async def run(job: Callable[[], Awaitable[T]]) -> T:
        async with slots:
            return await job()

    return await asyncio.gather(*(run(job) for job in jobs))


async def kill_and_wait_restarted(stack: Stack, name: str) -> None:
    before = {s.name: s for s in await stack.status()}[name]
    assert before.health is Health.HEALTHY and before.pid, before
    os.kill(before.pid, signal.SIGKILL)

    async def back() -> bool | None:
        now = {s.name: s for s in await stack.status()}[name]
        ok = now.health is Health.HEALTHY and now.pid not in (None, before.pid)
        return True if ok and now.restarts > before.restarts else None

    await eventually(back, within=120, what=f"{name} restarted after SIGKILL")


async def test_every_case_continues_after_each_component_is_killed(restart_stack: Stack) -> None:
    settings = restart_stack.settings
    client: Client = await connect_temporal(settings)
    tag = uuid.uuid4().hex[:4]
    loans = {
        stage: [overdue(f"L-rs{tag}-{stage.value[:2]}{i:02d}") for i in range(CASES_PER_STAGE)]
        for stage in (CaseStage.COLLECT_INFO, CaseStage.PROPOSE, CaseStage.SIGN, CaseStage.TRACK)
    }
    drivers = {
        stage: [CaseDriver(client, settings, loan) for loan in stage_loans]
        for stage, stage_loans in loans.items()
    }
    async with EventProducer(settings) as producer:
        await producer.send_events(
            settings.kafka.topics.overdue, [loan for group in loans.values() for loan in group]
        )

        # Put each group where it should wait: one case in four at each stage.
        async def to_propose(driver: CaseDriver) -> None:
            await driver.answer_contact()

        async def to_sign(driver: CaseDriver) -> None:
            await driver.answer_contact()
            await driver.choose_plan()

        async def to_track(driver: CaseDriver) -> None:
            await to_sign(driver)
            await driver.sign()
            await driver.pay_first_instalment(producer)

        async def opened(driver: CaseDriver) -> None:
            await eventually(
                lambda: _contacted(driver), within=60, what=f"{driver.handle.case_id} contacted"
            )

        await bounded(
            [lambda d=d: opened(d) for d in drivers[CaseStage.COLLECT_INFO]]
            + [lambda d=d: to_propose(d) for d in drivers[CaseStage.PROPOSE]]
            + [lambda d=d: to_sign(d) for d in drivers[CaseStage.SIGN]]
            + [lambda d=d: to_track(d) for d in drivers[CaseStage.TRACK]]
        )
        for stage, group in drivers.items():
            for driver in group:
                view = await driver.view()
                assert view.stage is stage, (driver.handle.case_id, view.stage)

        # Every component, killed in turn; supervision brings each back.
        assert set(KILL_ORDER) == set(COMPONENT_NAMES)
        for name in KILL_ORDER:
            await kill_and_wait_restarted(restart_stack, name)

        # Every case takes its next step.
        async def propose_from_collect(driver: CaseDriver) -> None:
            view = await driver.answer_contact()
            assert view.stage in (CaseStage.ASSESS, CaseStage.PROPOSE), view.stage

        async def sign_from_propose(driver: CaseDriver) -> None:
            view = await driver.choose_plan()
            assert view.stage is CaseStage.SIGN

        async def track_from_sign(driver: CaseDriver) -> None:
            view = await driver.sign()
            assert view.stage is CaseStage.TRACK

        async def first_checkpoint(driver: CaseDriver) -> None:
            async def checked() -> bool | None:
                view = await driver.view()
                first = view.schedule[0].status if view.schedule else None
                return True if first is InstalmentStatus.PAID else None

            await eventually(checked, within=300, what=f"{driver.handle.case_id} first instalment")

        await bounded(
            [lambda d=d: propose_from_collect(d) for d in drivers[CaseStage.COLLECT_INFO]]
            + [lambda d=d: sign_from_propose(d) for d in drivers[CaseStage.PROPOSE]]
            + [lambda d=d: track_from_sign(d) for d in drivers[CaseStage.SIGN]]
            + [lambda d=d: first_checkpoint(d) for d in drivers[CaseStage.TRACK]]
        )

    all_drivers = [d for group in drivers.values() for d in group]
    statuses = [
        (await client.get_workflow_handle(d.handle.case_id).describe()).status for d in all_drivers
    ]
    assert statuses.count(WorkflowExecutionStatus.RUNNING) == len(all_drivers), statuses

    signed = [d for stage in (CaseStage.SIGN, CaseStage.TRACK) for d in drivers[stage]]
    agreements = {(await d.view()).agreement.agreement_id for d in signed}  # type: ignore[union-attr]
    book = [r for r in await restructures(settings) if r.loan_id.startswith(f"L-rs{tag}")]
    assert sorted(r.agreement_id for r in book) == sorted(agreements)  # each exactly once
    assert len({r.restructure_ref for r in book}) == len(book)
    final = await restart_stack.status()
    assert all(s.health is Health.HEALTHY for s in final), final


async def _contacted(driver: CaseDriver) -> bool | None:
    return True if (await driver.view()).contact_log else None
