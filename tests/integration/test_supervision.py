"""Supervision keeps the stack up: a component killed with SIGKILL is restarted (foreground
and detached alike), the others keep running, and `status` says what happened."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable

import pytest

from settings import Settings
from stack.environment import child_env
from stack.orchestrator import Health, Stack
from tests.integration.services_support import all_healthy, eventually

pytestmark = pytest.mark.integration
LIGHT = ["contact", "webhooks"]  # quick to start, need neither Kafka nor Temporal to be up


async def restarted_healthy(stack: Stack, name: str, old_pid: int) -> None:
    async def check() -> bool | None:
        status = {s.name: s for s in await stack.status()}[name]
        healthy = status.health is Health.HEALTHY and status.pid not in (None, old_pid)
        return True if healthy and status.restarts >= 1 else None

    await eventually(check, within=60, what=f"{name} restarted and healthy")


async def test_a_killed_component_is_restarted_and_the_others_keep_running(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory()
    stack = Stack(settings, only=LIGHT)
    try:
        await stack.up()  # returns with the stack running: what `up --detach` does
        before = {s.name: s.pid for s in await stack.status()}

        os.kill(before["webhooks"], signal.SIGKILL)
        await restarted_healthy(stack, "webhooks", before["webhooks"])

        after = {s.name: s for s in await stack.status()}
        assert after["contact"].pid == before["contact"]  # untouched
        assert after["contact"].restarts == 0
        assert after["webhooks"].restarts == 1
        assert "SIGKILL" in after["webhooks"].last_exit
    finally:
        await stack.down()
    assert not stack.supervisor.running()


async def test_in_the_foreground_a_dead_component_does_not_take_the_stack_down(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory()
    up = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "cli.main", "stack", "up", "--only", ",".join(LIGHT)],
        env=child_env(settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    stack = Stack(settings, only=LIGHT)
    try:
        await eventually(lambda: all_healthy(stack), within=60, what="foreground stack healthy")
        pid = {s.name: s.pid for s in await stack.status()}["contact"]
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        await restarted_healthy(stack, "contact", pid)
        assert up.returncode is None  # the foreground `up` is still supervising

        up.send_signal(signal.SIGINT)  # Ctrl-C stops everything
        raw, _ = await asyncio.wait_for(up.communicate(), 60)
        output = raw.decode()
    finally:
        if up.returncode is None:
            up.kill()
        await stack.down()
    assert up.returncode == 0, output
    assert "contact: restarted 1x" in output
    assert all(s.health is Health.STOPPED for s in await stack.status())
