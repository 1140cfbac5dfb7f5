"""The worker's workflow runner answers the payload contexts of a case outside the sandbox
(``worker.CaseWorkflowRunner``): its answers must be the ones the SDK's sandboxed instance gives."""

from __future__ import annotations

import ast
import asyncio
import ctypes
import dataclasses
import gc
import platform
from pathlib import Path
from typing import Any

import pytest
from temporalio.bridge.proto.workflow_activation import WorkflowActivation
from temporalio.worker import WorkflowInstance, WorkflowInstanceDetails
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from engine.actions import SubmitFinancials
from schemas.case import CaseOutcome, CaseStage
from tests.workflow.conftest import DelegatingInstance, profile
from worker import CASE_SANDBOX, PASSED_THROUGH, CaseWorkflowRunner, case_workflow_runner
from workflows import case as case_module

pytestmark = pytest.mark.workflow


class _Compared(DelegatingInstance):
    """Answers as the runner under test does, and records the SDK's own answer beside it: for a
    payload of no command, a fresh SDK instance's; for a command's, the tested case's own
    sandboxed instance asked the SDK's way (code run inside its sandbox), which holds the case's
    pending commands."""

    def __init__(self, tested: WorkflowInstance, sdk: WorkflowInstance, seen: list[Any]) -> None:
        super().__init__(tested)
        self._sdk, self._seen = sdk, seen
        self._sandboxed: WorkflowInstance = tested._sandboxed  # type: ignore[attr-defined]

    def _asked_the_sdk_way(self, command_info: Any) -> WorkflowInstance:
        return self._sdk if command_info is None else self._sandboxed

    def get_serialization_context(self, command_info: Any) -> Any:
        answer = super().get_serialization_context(command_info)
        sdk_answer = self._asked_the_sdk_way(command_info).get_serialization_context(command_info)
        self._seen.append(("serialization", command_info, answer, sdk_answer))
        return answer

    def get_external_store_context(self, command_info: Any) -> Any:
        answer = super().get_external_store_context(command_info)
        sdk_answer = self._asked_the_sdk_way(command_info).get_external_store_context(command_info)
        self._seen.append(("store", command_info, answer, sdk_answer))
        return answer


class _ComparingRunner(CaseWorkflowRunner):
    def __init__(self) -> None:
        super().__init__(restrictions=CASE_SANDBOX)
        self.seen: list[Any] = []

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        sdk = SandboxedWorkflowRunner.create_instance(self, det)  # never activated: asked only
        return _Compared(super().create_instance(det), sdk, self.seen)


async def test_the_runner_answers_every_payload_context_as_the_sandboxed_workflow_would(
    new_case_on_own_server,
) -> None:
    runner = _ComparingRunner()
    case = await new_case_on_own_server(workflow_runner=runner)
    await case.start()
    await case.until(lambda v: v.contact_log, "first contact")  # the start input, queries
    await case.act(SubmitFinancials(profile=profile()))  # an update
    await case.until(lambda v: v.stage is CaseStage.PROPOSE, "an offer")
    await case.pay("10.00", "runner")  # a signal
    # Ended only once the case has taken it (work in flight at the end can hold a server's clock).
    await case.until(lambda v: v.balance is not None and v.balance.paid_since_basis > 0, "paid")

    assert runner.seen, "no payload asked for its context"
    commands = [seen for seen in runner.seen if seen[1] is not None]
    assert commands, "no payload of a command (an activity) asked for its context"
    assert any(answer is not None for _, _, answer, _ in commands)
    for kind, command_info, answer, sdk_answer in runner.seen:
        assert answer == sdk_answer, (kind, command_info)


# --- no activation kept by a cached case ----------------------------------------------------

BALLAST = 8 * 2**20
"""Bytes added to a start activation where nothing reads them: kept only if the activation is."""


class _FirstActivationRecorded(DelegatingInstance):
    def __init__(self, instance: WorkflowInstance, recorded: list[bytes]) -> None:
        super().__init__(instance)
        self._recorded = recorded

    def activate(self, act: Any) -> Any:
        if not self._recorded:
            self._recorded.append(act.SerializeToString())
        return super().activate(act)


class _RecordingRunner(CaseWorkflowRunner):
    """The worker's runner; remembers the first case's details and first activation."""

    def __init__(self) -> None:
        super().__init__(restrictions=CASE_SANDBOX)
        self.details: list[WorkflowInstanceDetails] = []
        self.first_activation: list[bytes] = []

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        self.details.append(det)
        return _FirstActivationRecorded(super().create_instance(det), self.first_activation)


def _heap_in_use() -> int:
    """glibc's bytes in use (heap and mmapped chunks): where protobuf messages live."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    info = libc.mallinfo2()
    return int(info.uordblks + info.hblkhd)


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()
        )
    ]


async def _kept_after_start(runner: Any, det: WorkflowInstanceDetails, first: bytes) -> int:
    """Heap still in use once a new instance has run the start activation and it is dropped."""
    gc.collect()
    before = _heap_in_use()
    act = WorkflowActivation.FromString(first)
    start = next(job.initialize_workflow for job in act.jobs if job.HasField("initialize_workflow"))
    start.arguments[0].metadata["ballast"] = bytes(BALLAST)
    # As the SDK's worker builds the details: from the start activation itself. (The local
    # activity check is the worker's: this instance runs without one.)
    det = dataclasses.replace(
        det,
        last_completion_result=start.last_completion_result,
        extern_functions={"__temporal_assert_local_activity_valid": lambda name: None},
    )
    instance = runner.create_instance(det)  # on the event loop, as the worker does
    await asyncio.to_thread(instance.activate, act)
    del act, start, det
    gc.collect()
    kept = _heap_in_use() - before
    del instance
    return kept


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="reads glibc"
)
async def test_a_cached_case_keeps_none_of_its_activations(new_case_on_own_server) -> None:
    recording = _RecordingRunner()
    case = await new_case_on_own_server(workflow_runner=recording)
    await case.start()
    await case.until(lambda v: v.contact_log, "first contact")
    det, first = recording.details[0], recording.first_activation[0]

    sdk_runner = SandboxedWorkflowRunner(restrictions=CASE_SANDBOX)
    # The SDK's own runner keeps the whole start activation, ballast and all (when this fails,
    # the SDK no longer does, and the runner's copies can go).
    assert await _kept_after_start(sdk_runner, det, first) > BALLAST
    # The worker's keeps a case's objects only.
    assert await _kept_after_start(case_workflow_runner(), det, first) < BALLAST // 4


# --- the workflow module, loaded once per worker --------------------------------------------

MUTABLE = (list, dict, set, bytearray)


def test_the_case_module_keeps_no_state() -> None:
    """The worker passes ``workflows.case`` through the sandbox, so every case shares it."""
    assert "workflows.case" in PASSED_THROUGH
    shared = {**vars(case_module), **vars(case_module.CaseWorkflow)}
    mutable = [
        name
        for name, value in shared.items()
        if not name.startswith("__") and isinstance(value, MUTABLE)
    ]
    assert not mutable, f"module or class state every case would share: {mutable}"
    source = ast.parse(Path(case_module.__file__ or "").read_text(encoding="utf-8"))
    assert not any(isinstance(node, ast.Global | ast.Nonlocal) for node in ast.walk(source))


async def test_a_case_runs_the_same_with_its_module_reloaded_in_the_sdk_default_sandbox(
    new_case_on_own_server,
) -> None:
    """The SDK's default: the workflow's module re-imported in every sandbox, with the sandbox's
    restricted modules (``datetime``) in it — any non-deterministic call in it fails here."""
    others = [name for name in PASSED_THROUGH if name != "workflows.case"]
    strict = SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*others)
    )
    case = await new_case_on_own_server(workflow_runner=strict)
    await case.start()
    await case.to_tracking(profile())
    await case.pay_every_instalment()
    view = await case.finish(None)
    assert view.outcome is CaseOutcome.CURED
