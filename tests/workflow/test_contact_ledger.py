"""The borrower's contact ledger on the time-skipping server: cases of one borrower running at
once share one ledger workflow and never exceed a cap together; a case opened later (another
loan, another episode) starts from the same ledger."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.case_activities import CaseActivities
from activities.contact_channels import ContactDirectorySimulator, ContactGatewaySimulator
from activities.core_banking import CoreBankingSimulator
from activities.decide import DECISION_ACTIVITIES
from activities.esign import ESignatureSimulator
from activities.publisher import InMemoryCaseEventPublisher
from decisions.contact_ledger import RETENTION, AttemptRequest, LedgerView, OutcomeReport
from decisions.policy import DEFAULT_POLICY_FILE, PACKS_DIR, load_contact_rules
from schemas.contact import ContactChannel, ContactHolds, ContactOutcome, Direction
from tests.conftest import start_time_skipping
from tests.workflow.conftest import Case, overdue_event
from worker import WORKFLOWS, case_workflow_runner
from workflows.contact_ledger import ContactLedgerWorkflow, LedgerStart, ledger_id
from workflows.ledger_handle import ContactLedgerHandle

pytestmark = pytest.mark.workflow

SHANGHAI = ZoneInfo("Asia/Shanghai")


def one_call_a_day_policy(directory: Path, per_day: int) -> Path:
    """The China pack with ``per_day`` unanswered calls a day, and every contact by phone."""
    pack = (PACKS_DIR / "contact-cn-2026.toml").read_text()
    pack = pack.replace("per_day = 6", f"per_day = {per_day}", 1)
    (directory / "pack.toml").write_text(pack)
    policy = DEFAULT_POLICY_FILE.read_text()
    policy = policy.replace('contact_pack = "cn-2026"', 'contact_pack = "pack.toml"')
    policy = policy.replace(
        'contact_channels = ["sms", "email", "phone"]', 'contact_channels = ["phone"]'
    )
    (directory / "policy.toml").write_text(policy)
    return directory / "policy.toml"


class Borrower:
    """Cases of one borrower on one worker: one gateway (it records every call), one
    directory, one contact ledger."""

    def __init__(self, env: WorkflowEnvironment, policy_file: Path) -> None:
        self.env = env
        self.borrower_id = f"B-{uuid.uuid4().hex[:8]}"
        self.task_queue = f"borrower-{uuid.uuid4().hex[:8]}"
        self.core_banking = CoreBankingSimulator()
        self.gateway = ContactGatewaySimulator()  # calls ring out unanswered
        self.directory = ContactDirectorySimulator()
        self.publisher = InMemoryCaseEventPublisher()
        self.activities = CaseActivities(
            core_banking=self.core_banking,
            directory=self.directory,
            gateway=self.gateway,
            esign=ESignatureSimulator(),
            publisher=self.publisher,
            policy_file=policy_file,
            clock=env.get_current_time,
        )
        self.cases: list[Case] = []
        self.ledger = ContactLedgerHandle(env.client, self.borrower_id, task_queue=self.task_queue)

    def case(self) -> Case:
        loan = overdue_event(borrower_id=self.borrower_id)
        self.core_banking.add_loan(loan, None)
        case = Case(
            env=self.env,
            loan=loan,
            core_banking=self.core_banking,
            gateway=self.gateway,
            directory=self.directory,
            esign=ESignatureSimulator(),
            publisher=self.publisher,
            task_queue=self.task_queue,
        )
        self.cases.append(case)
        return case

    async def morning(self) -> None:
        """Skip to the next 10:00 in Shanghai."""
        now = await self.env.get_current_time()
        morning = now.replace(hour=2, minute=0, second=0, microsecond=0)
        if morning <= now:
            morning += timedelta(days=1)
        await self.env.sleep(morning - now)

    def calls_per_day(self) -> Counter:
        return Counter(
            self.ledger_day(entry)
            for entry in self._entries
            if entry.direction is Direction.OUTBOUND and entry.channel is ContactChannel.PHONE
        )

    def ledger_day(self, entry) -> str:
        return entry.at.astimezone(SHANGHAI).date().isoformat()

    async def refresh(self) -> None:
        self._entries = (await self.ledger.view()).entries

    async def blocked(self, case: Case) -> list[str]:
        return [d.summary[1] for d in (await case.audit()).decisions if d.kind == "contact_blocked"]

    async def settled(self, case: Case) -> None:
        """Until the case made its first contact or was told to wait."""
        for _ in range(400):
            try:
                if (await case.view()).contact_log or await self.blocked(case):
                    return
            except Exception:  # not started yet
                pass
            await asyncio.sleep(0.05)
        raise AssertionError(f"{case.case_id} never asked to contact")


@contextlib.asynccontextmanager
async def borrower(env: WorkflowEnvironment, policy_file: Path) -> AsyncIterator[Borrower]:
    world = Borrower(env, policy_file)
    async with Worker(
        env.client,
        task_queue=world.task_queue,
        workflows=WORKFLOWS,
        activities=[*world.activities.all(), *DECISION_ACTIVITIES],
        workflow_runner=case_workflow_runner(),
    ):
        try:
            yield world
        finally:
            for case in world.cases:
                with contextlib.suppress(Exception):
                    await case.h.terminate("test over")
            with contextlib.suppress(Exception):
                await env.client.get_workflow_handle(ledger_id(world.borrower_id)).terminate(
                    "test over"
                )


async def test_two_cases_at_once_share_the_daily_cap_and_a_third_sees_the_same_ledger(
    case_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with borrower(case_env, one_call_a_day_policy(tmp_path, per_day=1)) as world:
        first, second = world.case(), world.case()
        await world.morning()
        await asyncio.gather(first.start(align=False), second.start(align=False))
        await asyncio.gather(world.settled(first), world.settled(second))
        await world.refresh()
        assert world.calls_per_day() == Counter({world.ledger_day(world._entries[0]): 1})
        assert len(world.gateway.sent) == 1
        waiting = [case for case in (first, second) if await world.blocked(case)]
        assert len(waiting) == 1 and await world.blocked(waiting[0]) == ["DAILY_CAP_REACHED"]

        # The next morning the waiting case takes the new day's call; a third case of the same
        # borrower, opened then, finds it taken.
        await world.morning()
        third = world.case()
        await third.start(align=False)
        await world.settled(third)
        assert await world.blocked(third) == ["DAILY_CAP_REACHED"]
        await world.refresh()
        assert set(world.calls_per_day().values()) == {1}
        assert sum(world.calls_per_day().values()) == 2 == len(world.gateway.sent)
        assert {entry.debt for entry in world._entries} == {
            first.loan.loan_id,
            second.loan.loan_id,
        }
        view = await world.ledger.view()
        assert view.granted == 2 and view.refused == 2 and view.borrower_id == world.borrower_id


async def test_six_cases_at_once_take_turns_under_the_cap(
    case_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with borrower(case_env, one_call_a_day_policy(tmp_path, per_day=2)) as world:
        cases = [world.case() for _ in range(6)]
        await world.morning()
        await asyncio.gather(*(case.start(align=False) for case in cases))
        await asyncio.gather(*(world.settled(case) for case in cases))
        await world.refresh()
        assert list(world.calls_per_day().values()) == [2]
        # Those told to wait come back the next mornings at 08:00, two a day.
        for _ in range(2):
            await world.morning()
        for case in cases:
            await case.until(lambda view: len(view.contact_log) == 1, "its first call")
        await world.refresh()
        assert list(world.calls_per_day().values()) == [2, 2, 2]
        assert len(world.gateway.sent) == 6


async def view_when_answered(ledger: ContactLedgerHandle) -> LedgerView:
    """The ledger's view. Right after a continue-as-new the time-skipping server can let a
    query to the new run time out before its first task ran: asked again until it answers."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return await ledger.view(rpc_timeout=timedelta(seconds=5))
        except RPCError:
            assert time.monotonic() < deadline, "the ledger never answered its view query"
            await asyncio.sleep(0.05)


def attempt(number: int, at, debt: str = "L-1") -> AttemptRequest:
    return AttemptRequest(
        attempt_id=f"case-{debt}-a{number}-phone",
        case_id=f"case-{debt}",
        debt=debt,
        channel=ContactChannel.PHONE,
        at=at,
        time_zone="Asia/Shanghai",
        holds=ContactHolds(),
        rules=load_contact_rules("cn-2026"),
    )


@pytest.mark.xfail(
    strict=False,
    reason=(
        "open: the time-skipping server sometimes times out a query or a sleep around this "
        "ledger's continue-as-new (about one run in four here); the ledger's own rules are "
        "covered by tests/unit/test_contact_ledger.py"
    ),
)
async def test_the_ledger_continues_as_new_with_its_log_and_ends_when_nothing_can_block() -> None:
    # A time-skipping server of its own: when that server times out around the continue-as-new
    # (the marker's reason), it must not leave the session's server stuck for the tests after.
    env = await start_time_skipping()
    try:
        await _continues_as_new_and_ends(env)
    finally:
        await env.shutdown()


async def _continues_as_new_and_ends(case_env: WorkflowEnvironment) -> None:
    borrower_id = f"B-{uuid.uuid4().hex[:8]}"
    task_queue = f"ledger-{uuid.uuid4().hex[:8]}"
    ledger = ContactLedgerHandle(case_env.client, borrower_id, task_queue=task_queue)
    async with Worker(
        case_env.client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        workflow_runner=case_workflow_runner(),
    ):
        try:
            # A ledger that continues as new every few dozen events.
            await case_env.client.start_workflow(
                ContactLedgerWorkflow.run,
                LedgerStart(borrower_id=borrower_id, continue_as_new_after_events=40),
                id=ledger_id(borrower_id),
                task_queue=task_queue,
            )
            now = (await case_env.get_current_time()).replace(hour=2, minute=0)
            decisions = [(await ledger.request(attempt(n, now))).allowed for n in range(12)]
            assert decisions == [True] * 6 + [False] * 6
            for n in range(6):
                await ledger.record_outcome(
                    OutcomeReport(attempt_id=f"case-L-1-a{n}-phone", outcome="unanswered")
                )
            view = await view_when_answered(ledger)
            assert view.run_count > 1, "never continued as new"
            assert len(view.entries) == 6 and view.granted == 6 and view.refused == 6
            assert {e.outcome for e in view.entries} == {ContactOutcome.UNANSWERED}

            # Idle for longer than any rule looks back: the run ends, the next request starts
            # a new, empty ledger.
            await case_env.sleep(RETENTION + timedelta(days=1))
            handle = case_env.client.get_workflow_handle(ledger_id(borrower_id))
            # The timer fired; its task runs on the worker. (Polled: the time-skipping server
            # answers result() of a ledger that continued as new with "no completion event".)
            deadline = time.monotonic() + 120
            while (await handle.describe()).status is not WorkflowExecutionStatus.COMPLETED:
                assert time.monotonic() < deadline, "the idle ledger never finished"
                await asyncio.sleep(0.05)
            later = await case_env.get_current_time()
            assert (await ledger.request(attempt(99, later.replace(hour=3)))).allowed
            assert len((await ledger.view()).entries) == 1
        finally:
            with contextlib.suppress(Exception):
                await case_env.client.get_workflow_handle(ledger_id(borrower_id)).terminate()
