"""Start and stop the simulated bank (``simulate.bank``) as a supervised child process, in
place of the stack's own worker (both would poll the same task queue)."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from temporalio.service import RPCError

from settings import Settings
from stack.apps import workflow_pollers
from stack.environment import child_env
from stack.errors import StackError
from stack.orchestrator import Stack
from stack.processes import PidState, ProcessSupervisor

BANK = "sim-bank"
STARTUP_TIMEOUT_SECONDS = 60.0


@dataclass
class RunningBank:
    supervisor: ProcessSupervisor
    pid: int
    replaced_stack_worker: bool


async def start_bank(
    settings: Settings,
    report: Callable[[str], None],
    metrics_address: str | None = None,
) -> RunningBank:
    """Stop the stack's worker if it runs (remembered, see ``stop_bank``), start the bank, and
    return once it polls the task queue."""
    supervisor = ProcessSupervisor(settings.data_dir.resolve())
    replaced = supervisor.state("worker")[0] is PidState.RUNNING
    if replaced:
        report("the stack's worker steps aside for the simulated bank (restored afterwards)")
        await Stack(settings, only=["worker"], report=report).down()
    command = [sys.executable, "-m", "simulate.bank"]
    if metrics_address:
        command += ["--metrics", metrics_address]
    child = supervisor.start(BANK, command, child_env(settings))
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while not await _polling(settings, child.pid):
        if child.poll() is not None:
            raise StackError(f"{BANK} exited while starting:\n{supervisor.log_tail(BANK)}")
        if time.monotonic() > deadline:
            supervisor.stop(BANK)
            raise StackError(f"{BANK} did not start polling:\n{supervisor.log_tail(BANK)}")
        await asyncio.sleep(0.25)
    report(f"simulated bank polling (pid {child.pid}, log {supervisor.log_file(BANK)})")
    return RunningBank(supervisor, child.pid, replaced)


async def stop_bank(bank: RunningBank, settings: Settings, report: Callable[[str], None]) -> None:
    await asyncio.to_thread(bank.supervisor.stop, BANK)
    report("simulated bank stopped")
    if bank.replaced_stack_worker:
        await Stack(settings, only=["worker"], report=report).up()


async def _polling(settings: Settings, pid: int) -> bool:
    """Does a workflow poller of this process (SDK identity ``<pid>@<host>``) show up?"""
    try:
        pollers = await workflow_pollers(settings)
    except RPCError:
        return False
    return any(poller.identity.startswith(f"{pid}@") for poller in pollers)
