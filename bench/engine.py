"""Case engine benchmarks: what one case costs the worker, how many can sleep, how fast their
timers drain, and what a worker restart costs.

Every run starts its own Temporal dev server (isolated data dir and ports) and the benchmark
worker (``bench.engine_worker``: the production worker with instant in-memory systems).

* ``memory``   — worker RSS per cached case, sandbox build per cache miss, worker CPU per
  workflow task. ``--workflow floor``: the same with ``bench.floor.FloorSleeper``.
* ``sleepers`` — ``--cases`` open cases asleep in ``track`` (worker RSS with its cache full),
  then ``--due`` of them, evicted long before, whose instalment checkpoint falls due at one
  instant: how fast the worker drains them. ``--workflow floor`` runs the same with
  ``bench.floor.FloorSleeper`` (a timer, an upsert, a timer) instead of the case: the platform's
  floor on this machine.
* ``restart``  — ``--cases`` real cases spread over every stage (negotiated through the actual
  workflow), then the worker is restarted: how long until every case answers a query again, and
  how many workflow tasks timed out.

Sleeping cases are started from a case state driven into ``track`` by the pure case machine
(``CaseStart.carried``, exactly what continue-as-new does): one workflow task each instead of a
whole negotiation, so 100,000 fit in minutes. Their memory and timer cost is a real case's.

Usage:
  .venv/bin/python -m bench.engine memory [--cases 1000] [--workflow case|floor]
  .venv/bin/python -m bench.engine sleepers [--cases 100000] [--due 10000] [--cache 2000]
                                            [--workflow case|floor]
  .venv/bin/python -m bench.engine restart [--cases 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType, TimeoutType
from temporalio.client import Client, WorkflowHistory
from temporalio.service import RPCError
from temporalio.worker import Replayer

from bench.common import (
    PySpy,
    compile_bytecode,
    histogram_quantiles,
    load_average,
    print_table,
    sample_process,
    scrape,
    write_result,
)
from bench.engine_worker import GC_REPORT
from bench.floor import FloorSleeper
from clients import PYDANTIC_CONVERTER, connect_temporal
from engine.actions import ChooseOption, Dispute, Sign, SubmitFinancials
from engine.state import CaseStart, CaseState
from engine.timers import next_timer
from schemas.case import CaseStage
from schemas.events import LoanPayment, PaymentChannel
from settings import Settings
from stack.environment import child_env
from stack.isolated import isolated_settings
from stack.orchestrator import Stack
from stack.temporal import TemporalDevServer
from tests import factories
from tests.unit.case_driver import POLICY, Driver, borrower
from worker import case_workflow_runner
from workflows.case import CaseWorkflow
from workflows.handle import CaseHandle, open_case

ROOT = Path(__file__).resolve().parent.parent
FAR = timedelta(days=3650)


# --- the stack and the worker ----------------------------------------------------------------


@contextlib.asynccontextmanager
async def temporal_only(name: str, **overrides: Any) -> AsyncIterator[Settings]:
    """A Temporal dev server of its own (``server_pid`` finds its process)."""
    data_dir = Path(tempfile.mkdtemp(prefix=f"accord-bench-{name}-"))
    settings = isolated_settings(data_dir, **{"log_level": "WARNING", **overrides})
    stack = Stack(settings, only=["temporal"], report=lambda m: print(f"  stack: {m}"))
    try:
        await stack.up()
        yield settings
    finally:
        await stack.down()
        import shutil

        shutil.rmtree(data_dir, ignore_errors=True)


def server_pid(settings: Settings) -> int:
    """The pid of the stack's Temporal dev server."""
    record = Stack(settings, only=["temporal"]).supervisor.read_pid("temporal")
    assert record is not None and record.pid > 0, "the Temporal dev server is not up"
    return record.pid


@dataclass
class BenchWorker:
    settings: Settings
    paid: Decimal
    floor: bool = False
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    async def start(self) -> None:
        await asyncio.to_thread(self._spawn)
        assert self.process is not None and self.log is not None
        deadline = time.monotonic() + 60
        while b"polling as" not in self.log.read_bytes():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"bench worker did not start:\n{self.log.read_text()[-3000:]}")
            await asyncio.sleep(0.2)

    def _spawn(self) -> None:
        self.log = self.settings.data_dir / f"worker-{time.monotonic_ns()}.log"
        command = [sys.executable, "-m", "bench.engine_worker", "--paid", str(self.paid)]
        if self.floor:
            command.append("--floor")
        with self.log.open("wb") as output:
            self.process = subprocess.Popen(
                command,
                env=child_env(self.settings),
                cwd=ROOT,
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def rss_mib(self) -> float:
        return round(sample_process(self.pid).rss_bytes / 2**20, 1)

    def cpu_seconds(self) -> float:
        return sample_process(self.pid).cpu_seconds

    async def workflow_tasks(self) -> float:
        metrics = await scrape(
            f"{self.settings.worker.listen_host}:{self.settings.worker.metrics_port}"
        )
        return (
            histogram_quantiles(metrics, "temporal_workflow_task_execution_latency", ())["count"]
            or 0.0
        )

    async def collector_pauses(self) -> dict[str, list[float]]:
        """The worker's garbage-collector pauses since the last call, per generation:
        ``[count, total ms, longest ms]`` (``bench.engine_worker.CollectorPauses``)."""
        assert self.process is not None and self.log is not None
        log = self.log

        def reports() -> list[str]:
            return [line for line in log.read_text().splitlines() if line.startswith(GC_REPORT)]

        before = len(reports())
        os.kill(self.pid, signal.SIGUSR1)

        async def reported() -> bool:
            return len(reports()) > before

        await wait_for(reported, 30, "the worker's collector report", poll=0.1)
        pauses: dict[str, list[float]] = json.loads(reports()[-1].removeprefix(GC_REPORT))
        return pauses

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None:
            return
        self.process.send_signal(sig)
        await asyncio.to_thread(self.process.wait, 60)
        self.process = None


# --- cases -----------------------------------------------------------------------------------


def track_template() -> tuple[CaseState, Decimal]:
    """A case driven into ``track`` by the pure machine, and its first instalment amount."""
    driver = Driver().tracking()
    driver.run()
    assert driver.state.agreement is not None
    return driver.state, driver.state.agreement.schedule.amount(0)


def checkpoint_shift(state: CaseState, due_at: datetime) -> timedelta:
    """The hold shift that puts the state's next instalment checkpoint at ``due_at``: the
    checkpoint falls at a midnight of the borrower's time zone, read from the case's own
    timers."""
    assert state.tracking is not None
    unshifted = state.model_copy(deep=True)
    assert unshifted.tracking is not None
    unshifted.tracking.schedule_shift = timedelta(0)
    unshifted.tracking.next_reassessment_at = due_at + FAR
    timer = next_timer(unshifted, POLICY)
    assert timer is not None and timer.kind == "instalment_due", timer
    return due_at - timer.at


def sleeping_case(template: CaseState, loan_id: str, due_at: datetime) -> CaseState:
    state = template.model_copy(deep=True)
    assert state.loan is not None and state.tracking is not None
    state.loan = state.loan.model_copy(update={"loan_id": loan_id, "borrower_id": f"B-{loan_id}"})
    state.loan_id = loan_id
    state.case_id = state.loan.case_id
    state.outbox = []
    state.tracking.schedule_shift = checkpoint_shift(state, due_at)
    state.tracking.next_reassessment_at = due_at + FAR
    return state


async def start_sleepers(
    client: Client,
    settings: Settings,
    states: Iterable[CaseState],
    concurrency: int,
    floor: bool = False,
) -> int:
    """Starts each state as a case asleep in ``track`` (with ``floor``: a ``FloorSleeper`` that
    sleeps until the case's next timer)."""
    slots = asyncio.Semaphore(concurrency)
    started = 0

    async def start(state: CaseState) -> None:
        if floor:
            timer = next_timer(state, POLICY)
            assert timer is not None
            await client.start_workflow(
                FloorSleeper.run,
                timer.at,
                id=state.case_id,
                task_queue=settings.temporal.task_queue,
            )
            return
        await client.start_workflow(
            CaseWorkflow.run,
            CaseStart(
                loan_id=state.loan_id, delinquent_since=state.delinquent_since, carried=state
            ),
            id=state.case_id,
            task_queue=settings.temporal.task_queue,
        )

    async def one(state: CaseState) -> None:
        nonlocal started
        async with slots:
            for attempt in range(5):
                try:
                    await start(state)
                    started += 1
                    return
                except RPCError:
                    await asyncio.sleep(0.5 * 2**attempt)  # an overloaded server: back off

    await asyncio.gather(*(one(state) for state in states))
    return started


async def count(client: Client, query: str) -> int:
    return (await client.count_workflows(query)).count


async def wait_for(
    check: Callable[[], Awaitable[bool]], seconds: float, what: str, poll: float = 0.5
) -> float:
    """Seconds until ``check()``; raises after ``seconds``."""
    began = time.monotonic()
    while not await check():
        if time.monotonic() - began > seconds:
            raise TimeoutError(f"not within {seconds:.0f}s: {what}")
        await asyncio.sleep(poll)
    return time.monotonic() - began


async def _iterate(histories: list[WorkflowHistory]) -> AsyncIterator[WorkflowHistory]:
    for history in histories:
        yield history


async def replay_ms(histories: list[WorkflowHistory], floor: bool = False) -> float:
    """Milliseconds per replay: a one-task history is what a cache miss costs before any work."""
    replayer = (
        Replayer(workflows=[FloorSleeper], data_converter=PYDANTIC_CONVERTER)
        if floor
        else Replayer(
            workflows=[CaseWorkflow],
            data_converter=PYDANTIC_CONVERTER,
            workflow_runner=case_workflow_runner(),
        )
    )
    began = time.perf_counter()
    async with replayer.workflow_replay_iterator(_iterate(histories)) as results:
        async for result in results:
            if result.replay_failure is not None:
                raise result.replay_failure
    return round((time.perf_counter() - began) * 1000 / len(histories), 2)


# --- memory ----------------------------------------------------------------------------------


async def memory(arguments: argparse.Namespace) -> dict[str, Any]:
    template, instalment = track_template()
    cases = arguments.cases
    floor = arguments.workflow == "floor"
    async with temporal_only("memory", worker={"max_cached_workflows": cases + 100}) as settings:
        client = await connect_temporal(settings)
        worker = BenchWorker(settings, instalment, floor=floor)
        await worker.start()
        try:
            prefix = f"M{datetime.now(UTC):%H%M%S}"
            warm = [
                sleeping_case(template, f"{prefix}W{i}", datetime.now(UTC) + FAR) for i in range(50)
            ]
            await start_sleepers(client, settings, warm, 20, floor)
            await wait_for(
                lambda: _counted(
                    client, f"WorkflowId STARTS_WITH 'case-{prefix}W' AND CaseStage = 'track'", 50
                ),
                120,
                "warm-up cases asleep",
            )
            await asyncio.sleep(2)
            rss_before, cpu_before = worker.rss_mib(), worker.cpu_seconds()
            tasks_before = await worker.workflow_tasks()
            states = [
                sleeping_case(template, f"{prefix}C{i}", datetime.now(UTC) + FAR)
                for i in range(cases)
            ]
            began = time.monotonic()
            await start_sleepers(client, settings, states, 32, floor)
            await wait_for(
                lambda: _counted(
                    client,
                    f"WorkflowId STARTS_WITH 'case-{prefix}C' AND CaseStage = 'track'",
                    cases,
                ),
                600,
                "every case asleep",
            )
            seconds = time.monotonic() - began
            await asyncio.sleep(2)
            rss_after, cpu_after = worker.rss_mib(), worker.cpu_seconds()
            tasks = await worker.workflow_tasks() - tasks_before
            histories = [
                await client.get_workflow_handle(state.case_id).fetch_history()
                for state in states[:200]
            ]
            # Steady state: one payment to each case, now cached (no sandbox to build).
            await worker.collector_pauses()  # from here on
            cpu_before_paid, tasks_before_paid = worker.cpu_seconds(), await worker.workflow_tasks()
            await pay_each(client, states, 32, floor)
            await wait_for(
                lambda: _tasks_at_least(worker, tasks_before_paid + cases),
                300,
                "every payment applied",
            )
            cached_cpu = worker.cpu_seconds() - cpu_before_paid
            cached_tasks = await worker.workflow_tasks() - tasks_before_paid
            cached_gc = await worker.collector_pauses()
        finally:
            await worker.stop()
    saved = ROOT / "tests" / "workflow" / "histories" / "cooperative_12_month_plan.json"
    whole_case = WorkflowHistory.from_json("whole", json.loads(saved.read_text()))
    per_case_kib = (rss_after - rss_before) * 1024 / cases
    return {
        "workflow": arguments.workflow,
        "cases_cached": cases,
        "worker_rss_mib_before_after": [rss_before, rss_after],
        "worker_rss_kib_per_cached_case": round(per_case_kib, 1),
        "sandbox_build_ms_per_cache_miss": await replay_ms(histories, floor),
        **({} if floor else {"replay_ms_whole_12_month_case": await replay_ms([whole_case] * 20)}),
        "worker_cpu_ms_per_workflow_task": round(
            (cpu_after - cpu_before) * 1000 / max(tasks, 1), 2
        ),
        "workflow_tasks": tasks,
        "cached_worker_cpu_ms_per_workflow_task": round(
            cached_cpu * 1000 / max(cached_tasks, 1), 2
        ),
        "cached_workflow_tasks": cached_tasks,
        "cached_gc_pauses_count_total_max_ms": cached_gc,
        "start_rate_per_s": round(cases / seconds, 1),
    }


async def pay_each(
    client: Client, states: list[CaseState], concurrency: int, floor: bool = False
) -> None:
    """A small payment signalled to each case (what a cached case does most of its life)."""
    slots = asyncio.Semaphore(concurrency)

    async def one(state: CaseState) -> None:
        payment = LoanPayment(
            event_id=f"bench-pay-{state.case_id}",
            occurred_at=datetime.now(UTC),
            schema_version=1,
            loan_id=state.loan_id,
            currency="CNY",
            amount=Decimal("1.00"),
            paid_at=datetime.now(UTC),
            channel=PaymentChannel.BANK_TRANSFER,
        )
        async with slots:
            if floor:
                floor_case = client.get_workflow_handle(state.case_id)
                await floor_case.signal(FloorSleeper.receive, payment)
            else:
                await CaseHandle(client, state.case_id).send(payment)

    await asyncio.gather(*(one(state) for state in states))


async def _tasks_at_least(worker: BenchWorker, expected: float) -> bool:
    return await worker.workflow_tasks() >= expected


async def _tasks_after_timer(client: Client, workflow_id: str) -> int:
    """Workflow tasks a case ran from its timer's firing until it slept on its next timer."""

    kinds: list[EventType.ValueType] = []

    async def asleep_again() -> bool:
        events = (await client.get_workflow_handle(workflow_id).fetch_history()).events
        kinds[:] = [event.event_type for event in events]
        return (
            kinds[-1] == EventType.EVENT_TYPE_TIMER_STARTED
            and EventType.EVENT_TYPE_TIMER_FIRED in kinds
        )

    await wait_for(asleep_again, 600, f"{workflow_id} asleep again")
    fired = kinds.index(EventType.EVENT_TYPE_TIMER_FIRED)
    return kinds[fired:].count(EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)


async def _counted(client: Client, query: str, expected: int) -> bool:
    try:
        return await count(client, query) >= expected
    except RPCError:
        return False


async def _none_left(client: Client, query: str) -> bool:
    try:
        return await count(client, query) == 0
    except RPCError:
        return False


# --- sleepers --------------------------------------------------------------------------------


async def sleepers(arguments: argparse.Namespace) -> dict[str, Any]:
    """All but ``--due`` cases sleep for years; the ``--due`` ones were started before the last
    ``--cache`` + 500 cases (so evicted by then) and fall due together at one instant."""
    template, instalment = track_template()
    total, due, cache = arguments.cases, arguments.due, arguments.cache
    floor = arguments.workflow == "floor"
    samples: list[tuple[int, float]] = []
    async with temporal_only("sleepers", worker={"max_cached_workflows": cache}) as settings:
        client = await connect_temporal(settings)
        worker = BenchWorker(settings, instalment, floor=floor)
        await worker.start()
        try:
            prefix = f"S{datetime.now(UTC):%H%M%S}"
            filler = cache + 500
            asleep = total - due - filler
            started = 0
            began = time.monotonic()
            samples.append((0, worker.rss_mib()))

            async def start_batch(name: str, states: list[CaseState]) -> None:
                nonlocal started
                for chunk in range(0, len(states), 2000):
                    started += await start_sleepers(
                        client, settings, states[chunk : chunk + 2000], 64, floor
                    )
                    samples.append((started, worker.rss_mib()))
                    rate = started / (time.monotonic() - began)
                    rss = samples[-1][1]
                    print(f"  {name}: {started} started ({rate:.0f}/s), rss {rss} MiB", flush=True)

            far = datetime.now(UTC) + FAR
            await start_batch(
                "asleep", [sleeping_case(template, f"{prefix}A{i}", far) for i in range(asleep)]
            )
            # Paced by the worker, not by the starts: its first task per case is the slow part.
            first = f"WorkflowId STARTS_WITH 'case-{prefix}A' AND CaseStage = 'track'"
            # The worker gives each case its first task at some 40 a second on this machine.
            patience = max(900, total / 20)
            await wait_for(lambda: _counted(client, first, asleep), patience, "first cases asleep")
            rate = started / (time.monotonic() - began)
            lead = (due + filler) / rate * 1.5 + 60
            instant = datetime.fromtimestamp(int(time.time() + lead), UTC)
            print(f"  {due} cases fall due at {instant:%H:%M:%S} (in {lead:.0f}s)")
            due_cases = [sleeping_case(template, f"{prefix}D{i}", instant) for i in range(due)]
            await start_batch("due", due_cases)
            await start_batch(
                "filler", [sleeping_case(template, f"{prefix}F{i}", far) for i in range(filler)]
            )
            creation_seconds = time.monotonic() - began
            query_asleep = f"WorkflowId STARTS_WITH 'case-{prefix}' AND CaseStage = 'track'"
            await wait_for(
                lambda: _counted(client, query_asleep, total), patience, "every case asleep"
            )
            asleep_open = await count(client, query_asleep + " AND ExecutionStatus = 'Running'")
            rss_all_asleep = worker.rss_mib()
            left = (instant - datetime.now(UTC)).total_seconds()
            if left < 5:
                raise RuntimeError(f"the due instant passed before every case slept ({left:.0f}s)")
            await asyncio.sleep(left)
            server = server_pid(settings)
            server_cpu_before = sample_process(server).cpu_seconds
            await worker.collector_pauses()  # from here on
            cpu_before, tasks_before = worker.cpu_seconds(), await worker.workflow_tasks()
            still_due = (
                f"WorkflowId STARTS_WITH 'case-{prefix}D' AND "
                # "<=" the instant misses a value equal to it on the dev server's SQLite
                f"NextCheckpointAt < '{(instant + timedelta(seconds=1)).isoformat()[:19]}Z'"
            )
            profiled = PySpy(worker.pid, "engine-sleepers-worker", enabled=arguments.profile)
            with profiled:
                began_drain = time.monotonic()
                # Drained once every due case is asleep again: the worker has run as many workflow
                # tasks as one due case's history shows for its firing, times the due cases. Counted
                # from the worker's metrics, not by querying the server, which would add the cost of
                # a visibility scan over every open case to what is measured.
                per_firing = await _tasks_after_timer(client, due_cases[0].case_id)
                await wait_for(
                    lambda: _tasks_at_least(worker, tasks_before + per_firing * due),
                    1800,
                    "every due case asleep again",
                    poll=0.25,
                )
                # A retried task (one timed out) counts twice: then some are still at it.
                await wait_for(
                    lambda: _none_left(client, still_due), 1800, "every due case checked", poll=1.0
                )
                drain_seconds = time.monotonic() - began_drain
            cpu = worker.cpu_seconds() - cpu_before
            server_cpu = sample_process(server).cpu_seconds - server_cpu_before
            tasks = await worker.workflow_tasks() - tasks_before
            rss_after = worker.rss_mib()
            drain_gc = await worker.collector_pauses()
            db_file = TemporalDevServer(settings).db_file
            db = sum(f.stat().st_size for f in db_file.parent.glob(f"{db_file.name}*"))
        finally:
            await worker.stop()
    return {
        "workflow": arguments.workflow,
        "open_cases_asleep_in_track": asleep_open,
        "max_cached_workflows": cache,
        "creation_seconds": round(creation_seconds, 1),
        "worker_rss_mib_by_started_cases": samples[:: max(1, len(samples) // 20)] + samples[-1:],
        "worker_rss_mib_all_asleep": rss_all_asleep,
        "server_db_mib": round(db / 2**20, 1),
        "due_at_one_instant": due,
        "drain_seconds": round(drain_seconds, 1),
        "drain_timers_per_s": round(due / max(drain_seconds, 1e-3), 1),
        "drain_worker_cpu_ms_per_workflow_task": round(cpu * 1000 / max(tasks, 1), 2),
        "drain_workflow_tasks_per_timer": per_firing,
        "drain_cpu_ms_per_timer": {
            "worker": round(cpu * 1000 / due, 2),
            "server": round(server_cpu * 1000 / due, 2),
        },
        "drain_gc_pauses_count_total_max_ms": drain_gc,
        "worker_rss_mib_after_drain": rss_after,
        **({"drain_worker_profile": profiled.summary(top=25)} if arguments.profile else {}),
    }


# --- restart ---------------------------------------------------------------------------------

STAGES = ("collect_info", "propose", "sign", "track", "disputed")


async def _negotiate(handle: CaseHandle, target: str) -> None:
    """Take a fresh case to ``target`` through the real workflow, as a borrower and staff would."""

    async def view_when(predicate: Callable[[Any], bool]) -> Any:
        for _ in range(600):
            with contextlib.suppress(RPCError):
                view = await handle.view()
                if predicate(view):
                    return view
            await asyncio.sleep(0.5)
        raise TimeoutError(f"{handle.case_id} did not get there")

    await view_when(lambda v: v.policy_version != "pending" and bool(v.contact_log))
    if target == "collect_info":
        return
    await handle.act(SubmitFinancials(profile=borrower()))
    view = await view_when(
        lambda v: (
            v.stage is CaseStage.PROPOSE
            and v.proposal is not None
            and v.next_checkpoint is not None
        )
    )
    if target == "propose":
        return
    await handle.act(ChooseOption(option_id=view.proposal.offered[0].option_id))
    view = await view_when(lambda v: v.envelope_id is not None)
    if target == "sign":
        return
    await handle.act(Sign(envelope_id=view.envelope_id))
    await view_when(lambda v: v.stage is CaseStage.TRACK)
    if target == "disputed":
        await handle.act(Dispute(raised_by="ops-bench"))


async def restart(arguments: argparse.Namespace) -> dict[str, Any]:
    template, instalment = track_template()
    del template
    cases = arguments.cases
    async with temporal_only("restart") as settings:
        client = await connect_temporal(settings)
        worker = BenchWorker(settings, instalment)
        await worker.start()
        prefix = f"R{datetime.now(UTC):%H%M%S}"
        targets = {f"{prefix}{i:05d}": STAGES[i % len(STAGES)] for i in range(cases)}
        slots = asyncio.Semaphore(48)
        cpu_before, tasks_before = worker.cpu_seconds(), await worker.workflow_tasks()
        began = time.monotonic()
        done = 0
        case_ids: list[str] = []

        async def create(loan_id: str, target: str) -> None:
            nonlocal done
            event = factories.loan(
                loan_id=loan_id,
                borrower_id=f"B-{loan_id}",  # contact caps count per borrower
                event_id=f"ovd-{loan_id}",
                occurred_at=datetime.now(UTC) - timedelta(hours=1),
            )
            case_ids.append(event.case_id)
            async with slots:
                await open_case(client, event, task_queue=settings.temporal.task_queue)
                await _negotiate(CaseHandle(client, event.case_id), target)
            done += 1
            if done % 200 == 0:
                rate = done / (time.monotonic() - began)
                print(f"  {done} of {cases} cases in place ({rate:.1f}/s)", flush=True)

        await asyncio.gather(*(create(loan_id, target) for loan_id, target in targets.items()))
        creation = time.monotonic() - began
        creation_cpu_ms = (worker.cpu_seconds() - cpu_before) * 1000
        creation_tasks = await worker.workflow_tasks() - tasks_before
        results = {}
        for how, sig in (
            ("graceful (SIGTERM)", signal.SIGTERM),
            ("killed (SIGKILL)", signal.SIGKILL),
        ):
            results[how] = await measure_restart(client, worker, case_ids, sig)
            print(f"  restart {how}: {results[how]}", flush=True)
        await worker.stop()
    return {
        "cases": cases,
        "stages": {stage: cases // len(STAGES) for stage in STAGES},
        "creation_seconds": round(creation, 1),
        "creation_worker_cpu_ms_per_workflow_task": round(
            creation_cpu_ms / max(creation_tasks, 1), 2
        ),
        "creation_workflow_tasks": creation_tasks,
        "restart": results,
    }


async def measure_restart(
    client: Client, worker: BenchWorker, case_ids: list[str], sig: int
) -> dict[str, Any]:
    """Stop the worker with ``sig``, start a new one, and ask every case for its view at once."""
    await worker.stop(sig)
    restarted_at = datetime.now(UTC)
    await worker.start()
    began = time.monotonic()
    answered: list[float] = []
    slots = asyncio.Semaphore(64)

    async def answers(case_id: str) -> None:
        handle = CaseHandle(client, case_id)
        async with slots:
            while True:
                try:
                    await handle.view(rpc_timeout=timedelta(seconds=30))
                    answered.append(time.monotonic() - began)
                    return
                except RPCError:
                    await asyncio.sleep(0.5)

    await asyncio.gather(*(answers(case_id) for case_id in case_ids))
    timeouts = await _task_timeouts(client, case_ids, restarted_at)
    answered.sort()
    return {
        "every_case_answered_within_s": round(answered[-1], 1),
        "p50_s": round(answered[len(answered) // 2], 2),
        "workflow_task_timeouts_start_to_close": timeouts.get("start_to_close", 0),
        "workflow_task_timeouts_schedule_to_start": timeouts.get("schedule_to_start", 0),
    }


async def _task_timeouts(client: Client, case_ids: list[str], since: datetime) -> dict[str, int]:
    found: dict[str, int] = {}
    names = {
        TimeoutType.TIMEOUT_TYPE_START_TO_CLOSE: "start_to_close",
        TimeoutType.TIMEOUT_TYPE_SCHEDULE_TO_START: "schedule_to_start",
    }
    for case_id in case_ids:
        history = await client.get_workflow_handle(case_id).fetch_history()
        for event in history.events:
            if event.event_type != EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
                continue
            if event.event_time.ToDatetime(UTC) < since:
                continue
            kind = names.get(event.workflow_task_timed_out_event_attributes.timeout_type, "other")
            found[kind] = found.get(kind, 0) + 1
    return found


# --- command line ----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    memory_parser = commands.add_parser("memory")
    memory_parser.add_argument("--cases", type=int, default=1000)
    memory_parser.add_argument(
        "--workflow",
        choices=("case", "floor"),
        default="case",
        help="floor: bench.floor's trivial sleeper instead of the case workflow",
    )
    sleepers_parser = commands.add_parser("sleepers")
    sleepers_parser.add_argument("--cases", type=int, default=100_000)
    sleepers_parser.add_argument("--due", type=int, default=10_000)
    sleepers_parser.add_argument("--cache", type=int, default=2_000)
    sleepers_parser.add_argument(
        "--workflow",
        choices=("case", "floor"),
        default="case",
        help="floor: bench.floor's trivial sleeper instead of the case workflow",
    )
    sleepers_parser.add_argument(
        "--profile", action="store_true", help="py-spy the worker through the drain"
    )
    restart_parser = commands.add_parser("restart")
    restart_parser.add_argument("--cases", type=int, default=2_000)
    arguments = parser.parse_args()
    compile_bytecode()
    load_before = load_average()
    run = {"memory": memory, "sleepers": sleepers, "restart": restart}[arguments.command]
    began = time.monotonic()
    result = asyncio.run(run(arguments))
    result["load_average_before_after"] = [load_before, load_average()]
    result["seconds"] = round(time.monotonic() - began, 1)
    result["command"] = "python -m bench.engine " + " ".join(sys.argv[1:])
    print_table(f"engine {arguments.command}", list(result.items()))
    print(f"  written to {write_result(f'engine-{arguments.command}', result)}")


if __name__ == "__main__":
    main()
