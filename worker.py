"""The Temporal worker entry point: ``accord worker``.

A production worker: task slots and cache size from settings (chosen from bench/README.md's
measurements), the SDK's Prometheus metrics on a port, its own health endpoint, graceful
shutdown on SIGTERM, and bytecode checked at start (the sandbox re-imports the contact ledger's
workflow module for every cache miss, and stale bytecode would recompile it each time; the case
workflow's module is loaded once, ``PASSED_THROUGH``), and what it built at start frozen out of
the garbage collector's full walks (``freeze_startup_objects``).

Deployment rule (instead of Temporal's worker versioning): every change to ``workflows/`` or
``engine/`` must replay the saved histories (``tests/workflow/test_replay.py``, run by CI); a
change that would not replay goes behind ``workflow.patched``. Old and new workers can then
serve the same task queue during a rolling deploy. The package version is in the worker's
identity, so the Temporal UI shows which version served each task.
"""

from __future__ import annotations

import asyncio
import compileall
import dataclasses
import gc
import logging
import os
import signal
import socket
from datetime import UTC, datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, TypeVar, cast

from google.protobuf.message import Message
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.bridge.proto.workflow_activation import WorkflowActivation
from temporalio.bridge.proto.workflow_completion import WorkflowActivationCompletion
from temporalio.client import Client
from temporalio.converter import (
    SerializationContext,
    StorageDriverStoreContext,
    StorageDriverWorkflowInfo,
    WorkflowSerializationContext,
)
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import (
    ExecuteWorkflowInput,
    Worker,
    WorkflowInboundInterceptor,
    WorkflowInstance,
    WorkflowInstanceDetails,
)
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions
from temporalio.workflow import Info

from activities.case_activities import CaseActivities
from activities.decide import DECISION_ACTIVITIES
from activities.external import http_systems, policy_registry
from activities.publisher import KafkaCaseEventPublisher
from clients import connect_temporal
from services.health import health_endpoint
from settings import Settings, get_settings
from staff.credentials import install_verify_keys
from staff.keys import verify_keys
from workflows.case import CaseWorkflow
from workflows.contact_ledger import ContactLedgerWorkflow

log = logging.getLogger("accord.worker")

ROOT = Path(__file__).resolve().parent
PASSED_THROUGH = (
    "engine",
    "decisions",
    "schemas",
    "activities",
    "workflows.search_attributes",
    "staff.credentials",
    "jwt",
    "cryptography",
    "workflows.calls",
    "workflows.case",
    "pydantic",
    "pydantic_core",
    "annotated_types",
    "typing_extensions",
)
"""Loaded once per process instead of once per sandbox: pure (``tests/unit/test_purity.py``) or
only types. ``workflows.case`` too, although the SDK re-imports a workflow's own module in every
sandbox by default: that copy of its code cost each cached case 40 KiB (``bench/README.md``,
engine). The SDK re-imports it to isolate module state, and the module keeps none
(``tests/workflow/test_worker_runner.py`` checks both that and that the workflow still runs
with its module re-imported in the SDK's default sandbox)."""
BYTECODE_PACKAGES = ("engine", "decisions", "schemas", "workflows", "activities")
WORKFLOWS = [CaseWorkflow, ContactLedgerWorkflow]
"""Every workflow a case worker runs: the cases and their borrowers' contact ledgers (the
contact activity starts a ledger on the task queue it runs on)."""


class CaseWorkflowRunner(SandboxedWorkflowRunner):
    """The SDK's sandbox, with the workflow's own payload contexts answered outside it, no
    activation kept by a cached case (``_ReleaseStartActivation``, ``_ActivationKeptParts``), and
    a local activity's late result refused (``_late_local_result``).

    For every payload of every activation the SDK (1.35) asks the workflow instance, three
    times, which serialization context to decode it with, and the sandboxed instance answers by
    compiling and running a line of code inside the sandbox: about a fifth of a cached case's
    workflow-task CPU (``bench/README.md``, engine). For a payload that belongs to no command
    (signals, updates, queries, the start input) the answer is always the workflow's own context,
    built from the workflow's info, which is known here. For a payload of a command (an
    activity's input or result, continue-as-new) the instance inside the sandbox is asked
    directly: its answer reads only its pending commands and builds the SDK's context objects,
    which runs no workflow code and imports nothing, so it needs no compiled code and no
    sandbox around it (a quarter of the worker's CPU in a drain of local-activity checkpoints).
    """

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        det = dataclasses.replace(
            det,
            last_completion_result=_detached(det.last_completion_result),
            last_failure=_detached(det.last_failure) if det.last_failure is not None else None,
            info=dataclasses.replace(
                det.info,
                headers={key: _detached(p) for key, p in det.info.headers.items()},
                raw_memo={key: _detached(p) for key, p in det.info.raw_memo.items()},
            ),
            interceptor_classes=[_ReleaseStartActivation, *det.interceptor_classes],
        )
        return _OwnContextOutside(super().create_instance(det), det.info)


_Message = TypeVar("_Message", bound=Message)


def _detached(message: _Message) -> _Message:
    """A copy that owns its memory: a part of a protobuf message keeps the whole message alive."""
    copy = type(message)()
    copy.CopyFrom(message)
    return copy


class _ActivationKeptParts:
    """An activation whose parts the SDK keeps until the next one are copies.

    The SDK (1.35) keeps two parts of each activation until the next: the deployment version and
    the internal flags. A part of a protobuf message holds the memory of the whole message, so
    every cached case kept its last activation: a payment, an update's input, the policy a local
    activity returned. Everything else is read from the activation itself.
    """

    def __init__(self, act: WorkflowActivation) -> None:
        self._act = act
        self.deployment_version_for_current_task = _detached(
            act.deployment_version_for_current_task
        )
        self.available_internal_flags = list(act.available_internal_flags)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._act, name)


class _ReleaseStartActivation(WorkflowInboundInterceptor):
    """Lets the run's first activation go once the run has started.

    The SDK (1.35) keeps two parts of a run's first activation for the run's life: the previous
    run's result (in the instance's details) and the start headers (in the run's input). A part
    of a protobuf message holds the memory of the whole message, so every cached case kept its
    start activation, the carried state's payload with it: 40 KiB a case (``bench/README.md``,
    engine). The runner gives the instance copies of the former; this replaces the latter, in
    the input object the SDK and the run share, before the run begins.
    """

    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        input.headers = {key: _detached(p) for key, p in input.headers.items()}
        return await self.next.execute_workflow(input)


class _OwnContextOutside(WorkflowInstance):
    def __init__(self, sandboxed: WorkflowInstance, info: Info) -> None:
        self._sandboxed = sandboxed
        # The SDK's (1.35) instance inside the sandbox, which answers for commands.
        in_sandbox = getattr(sandboxed, "globals_and_locals", {}).get("__temporal_in_sandbox")
        if in_sandbox is None:
            raise RuntimeError(
                "temporalio's sandbox no longer keeps its instance where CaseWorkflowRunner "
                "looks for it: run tests/workflow/test_worker_runner.py and update worker.py"
            )
        self._inside: WorkflowInstance = in_sandbox.instance
        # What ``_WorkflowInstanceImpl`` returns for a payload outside any command.
        self._own_context = WorkflowSerializationContext(
            namespace=info.namespace, workflow_id=info.workflow_id
        )
        self._own_store = StorageDriverStoreContext(
            target=StorageDriverWorkflowInfo(
                id=info.workflow_id,
                run_id=info.run_id,
                type=info.workflow_type,
                namespace=info.namespace,
            )
        )

    def activate(self, act: WorkflowActivation) -> WorkflowActivationCompletion:
        if _late_local_result(act):
            return _replay_instead(act)
        return self._sandboxed.activate(cast(WorkflowActivation, _ActivationKeptParts(act)))

    def get_serialization_context(self, command_info: Any) -> SerializationContext | None:
        if command_info is None:
            return self._own_context
        return self._inside.get_serialization_context(command_info)

    def get_external_store_context(self, command_info: Any) -> StorageDriverStoreContext:
        if command_info is None:
            return self._own_store
        return self._inside.get_external_store_context(command_info)

    def get_info(self) -> Info:
        return self._sandboxed.get_info()

    def get_thread_id(self) -> int | None:
        return self._sandboxed.get_thread_id()


LATE_LOCAL_RESULT = (
    "a local activity's result arrived with new history events (its marker went out in an "
    "earlier workflow task): failing this task so the run is replayed in history order"
)


def _late_local_result(act: WorkflowActivation) -> bool:
    """A live activation that brings a local activity's result together with anything else.

    The SDK core (1.35) can complete a workflow task with a local activity's marker before the
    workflow has seen the activity's result: when the task also answers a query. The result then
    reaches the workflow in the next task, with that task's new events (a signal, an update, a
    timer), and the SDK applies signals and updates first; a replay gives the result in the
    earlier task, before them. The run would go on differently from every later replay of its
    history ("Missing associated machine for LocalActivity" on each one, or a continue-as-new
    followed by commands of a message fed after it). A local activity resolved within its own
    task comes in an activation of its own, so anything else beside it means this case.
    """
    if act.is_replaying:
        return False
    jobs = act.jobs
    local = [
        job for job in jobs if job.HasField("resolve_activity") and job.resolve_activity.is_local
    ]
    return bool(local) and len(local) < len(jobs)


def _replay_instead(act: WorkflowActivation) -> WorkflowActivationCompletion:
    """Fail the workflow task: the core evicts the run, and the retried task replays the history
    (the local activity's result in the task of its marker) before it applies the new events."""
    log.warning("%s (run %s)", LATE_LOCAL_RESULT, act.run_id)
    completion = WorkflowActivationCompletion(run_id=act.run_id)
    completion.failed.failure.message = LATE_LOCAL_RESULT
    return completion


CASE_SANDBOX = SandboxRestrictions.default.with_passthrough_modules(*PASSED_THROUGH)


def case_workflow_runner() -> CaseWorkflowRunner:
    return CaseWorkflowRunner(restrictions=CASE_SANDBOX)


def worker_identity() -> str:
    try:
        package = version("accord")
    except PackageNotFoundError:
        package = "dev"
    return f"{os.getpid()}@{socket.gethostname()}/accord-{package}"


def build_worker(client: Client, settings: Settings, activities: CaseActivities) -> Worker:
    # Staff actions are verified with these (public) keys in every case this process runs.
    install_verify_keys(verify_keys(settings))
    tuning = settings.worker
    return Worker(
        client,
        task_queue=settings.temporal.task_queue,
        workflows=WORKFLOWS,
        activities=[*activities.all(), *DECISION_ACTIVITIES],
        workflow_runner=case_workflow_runner(),
        max_cached_workflows=tuning.max_cached_workflows,
        max_concurrent_workflow_tasks=tuning.max_concurrent_workflow_tasks,
        max_concurrent_activities=tuning.max_concurrent_activities,
        graceful_shutdown_timeout=timedelta(seconds=tuning.graceful_shutdown_seconds),
        identity=client.identity,
    )


def ensure_bytecode() -> None:
    """Compile what is stale (a no-op after ``make install``); warn when it cannot be written."""
    for package in BYTECODE_PACKAGES:
        if not compileall.compile_dir(ROOT / package, quiet=1):
            log.warning("could not compile %s: workflow tasks will recompile it", package)


async def has_polled(client: Client, settings: Settings, since: datetime) -> bool:
    """This process (by identity) polled the case task queue after it started."""
    described = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=settings.temporal.namespace,
            task_queue=TaskQueue(name=settings.temporal.task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        ),
        timeout=timedelta(seconds=3),
    )
    return any(
        poller.identity == client.identity and poller.last_access_time.ToDatetime(UTC) >= since
        for poller in described.pollers
    )


def freeze_startup_objects() -> None:
    """Put what the process has built so far (modules, schemas, the worker and its sandbox
    checks: ~116,000 objects that live as long as the process) out of the cycle collector's
    walks. A full collection walks every tracked object with the GIL held while every workflow
    task waits: 0.26 s at 1,000 cached cases; with these left out, the drain's were 35-45 %
    shorter (bench/README.md, *The garbage collector*)."""
    gc.collect()
    gc.freeze()


def metrics_runtime(settings: Settings) -> Runtime:
    """A runtime whose SDK metrics (task latencies, slots, cache) Prometheus can scrape."""
    address = f"{settings.worker.listen_host}:{settings.worker.metrics_port}"
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=address)))


async def run_worker(settings: Settings) -> None:
    ensure_bytecode()
    client = await connect_temporal(
        settings, runtime=metrics_runtime(settings), identity=worker_identity()
    )
    publisher = KafkaCaseEventPublisher(settings.kafka)
    await publisher.start()
    # Core banking, contact and e-signature over HTTP, at the URLs in settings: the bank's own
    # systems, or the embedded services `accord stack up` runs.
    systems = http_systems(settings)
    activities = CaseActivities(
        core_banking=systems.core_banking,
        directory=systems.directory,
        gateway=systems.gateway,
        esign=systems.esign,
        publisher=publisher,
        policy_file=settings.policy_file,
        policies=policy_registry(settings),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    started = datetime.now(UTC)
    worker = build_worker(client, settings, activities)
    freeze_startup_objects()

    async def healthy() -> str | None:
        if not worker.is_running or worker.is_shutdown:
            return "the worker is not running"
        if not await has_polled(client, settings, started):
            return "this process has not polled its task queue yet"
        return None

    tuning = settings.worker
    try:
        async with (
            worker,
            health_endpoint("worker", tuning.listen_host, tuning.health_port, healthy),
        ):
            log.info(
                "worker %s polling task queue %s", client.identity, settings.temporal.task_queue
            )
            await stop.wait()
            log.info("shutting down: finishing running tasks")
    finally:
        await publisher.stop()
        await systems.aclose()


def main() -> None:
    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request is noise
    asyncio.run(run_worker(settings))
