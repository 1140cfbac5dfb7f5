"""``worker._late_local_result``: which live activations the worker refuses (fails the task, so
the run is replayed) — a local activity's result beside anything else, and nothing more."""

from __future__ import annotations

from temporalio.bridge.proto.workflow_activation import (
    ResolveActivity,
    SignalWorkflow,
    WorkflowActivation,
    WorkflowActivationJob,
)

from worker import LATE_LOCAL_RESULT, _late_local_result, _replay_instead


def _resolved(seq: int, *, local: bool) -> WorkflowActivationJob:
    return WorkflowActivationJob(resolve_activity=ResolveActivity(seq=seq, is_local=local))


SIGNAL = WorkflowActivationJob(signal_workflow=SignalWorkflow(signal_name="event"))


def _activation(*jobs: WorkflowActivationJob, replaying: bool = False) -> WorkflowActivation:
    return WorkflowActivation(run_id="run-1", is_replaying=replaying, jobs=list(jobs))


def test_a_local_result_beside_a_signal_is_refused() -> None:
    assert _late_local_result(_activation(SIGNAL, _resolved(2, local=True)))


def test_a_local_result_beside_an_activitys_result_is_refused() -> None:
    assert _late_local_result(_activation(_resolved(3, local=False), _resolved(2, local=True)))


def test_local_results_alone_are_taken() -> None:
    assert not _late_local_result(_activation(_resolved(1, local=True)))
    assert not _late_local_result(_activation(_resolved(1, local=True), _resolved(2, local=True)))


def test_other_activations_are_taken() -> None:
    assert not _late_local_result(_activation(SIGNAL))
    assert not _late_local_result(_activation(SIGNAL, _resolved(3, local=False)))


def test_a_replay_is_never_refused() -> None:
    # A replay follows the history, whatever its activations hold.
    assert not _late_local_result(_activation(SIGNAL, _resolved(2, local=True), replaying=True))


def test_the_refusal_fails_the_task_with_the_reason() -> None:
    completion = _replay_instead(_activation(SIGNAL, _resolved(2, local=True)))
    assert completion.run_id == "run-1"
    assert completion.HasField("failed")
    assert completion.failed.failure.message == LATE_LOCAL_RESULT
