"""The embedded stack as a whole: bring components up in dependency order, report, tear down."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from settings import Settings
from stack.apps import StreamProcessor, TemporalWorker
from stack.component import Component
from stack.errors import ComponentUnhealthyError, StackError
from stack.kafka import KafkaBroker
from stack.processes import PidState, ProcessSupervisor, write_atomically
from stack.temporal import TemporalDevServer

COMPONENT_TYPES: dict[str, type[Component]] = {
    cls.name: cls for cls in (KafkaBroker, TemporalDevServer, TemporalWorker, StreamProcessor)
}
COMPONENT_NAMES = tuple(COMPONENT_TYPES)
INFRASTRUCTURE = ("kafka", "temporal")


class Topology(StrEnum):
    """``dev``: one broker, the Temporal dev server on SQLite, one worker, one stream processor.
    ``cluster``: the production shape (stack.cluster)."""

    DEV = "dev"
    CLUSTER = "cluster"


def topology_components(settings: Settings, topology: Topology) -> list[Component]:
    if topology is Topology.CLUSTER:
        from stack.cluster import cluster_components

        return cluster_components(settings)
    return [cls(settings) for cls in COMPONENT_TYPES.values()]


def component_names(settings: Settings, topology: Topology) -> tuple[str, ...]:
    return tuple(component.name for component in topology_components(settings, topology))


HEALTH_POLL_SECONDS = 0.25
STATUS_PROBE_SECONDS = 5.0


class Health(StrEnum):
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    STOPPED = "stopped"


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    health: Health
    pid: int | None
    address: str
    detail: str = ""


def parse_selection(
    only: str | Iterable[str] | None, available: Sequence[str] = COMPONENT_NAMES
) -> list[str]:
    """``"kafka,temporal"`` or ``["kafka", "temporal"]`` -> validated names in ``available``
    order; None -> all of ``available`` (the dev topology's components by default)."""
    if only is None:
        return list(available)
    names = [part.strip() for part in (only.split(",") if isinstance(only, str) else only)]
    names = [name for name in names if name]
    unknown = sorted(set(names) - set(available))
    if unknown:
        raise StackError(f"unknown component(s) {unknown}; choose from {list(available)}")
    return [name for name in available if name in names]


def describe_error(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}".strip().rstrip(":") or type(error).__name__


class Stack:
    """One data dir's set of supervised components.

    ``only`` selects components (default: all of the topology's); ``report`` receives one-line
    progress messages for a human; ``topology`` picks the dev stack or the cluster.
    """

    def __init__(
        self,
        settings: Settings,
        only: str | Iterable[str] | None = None,
        report: Callable[[str], None] | None = None,
        topology: Topology | str = Topology.DEV,
    ) -> None:
        self.settings = settings
        self.topology = Topology(topology)
        self.supervisor = ProcessSupervisor(settings.data_dir.resolve())
        available = topology_components(settings, self.topology)
        self.names = tuple(component.name for component in available)
        self.selected = parse_selection(only, self.names)
        self.components = [c for c in available if c.name in self.selected]
        self.report = report or (lambda message: None)
        self._children: dict[str, subprocess.Popen[bytes]] = {}  # started by this object

    @property
    def selection_file(self) -> Path:
        return self.supervisor.run_dir / "stack.json"

    # --- up ---------------------------------------------------------------------------------

    async def up(self) -> list[ComponentStatus]:
        """Start every selected component that is not running, in phases; wait until healthy.

        On any failure the components this call started are stopped again before raising.
        """
        try:
            self._check_ports()
            for phase in sorted({component.phase for component in self.components}):
                await run_all(
                    self._bring_up(component)
                    for component in self.components
                    if component.phase == phase
                )
        except BaseException:
            await self._stop_started()
            raise
        self.supervisor.run_dir.mkdir(parents=True, exist_ok=True)
        # Bringing up a subset (e.g. restarting one component) adds to what `status` reports.
        recorded = self.recorded_selection() if self.recorded_topology() is self.topology else None
        running = parse_selection([*(recorded or []), *self.selected], self.names)
        write_atomically(
            self.selection_file,
            json.dumps({"topology": self.topology.value, "components": running}),
        )
        return await self.status()

    def _check_ports(self) -> None:
        self.clean_stale_pid_files()
        for component in self.components:
            if self.supervisor.state(component.name)[0] is not PidState.RUNNING:
                for claim in component.port_claims():
                    claim.ensure_free()

    def clean_stale_pid_files(self) -> list[str]:
        """Remove pid files whose process is gone (or is no longer ours); report each."""
        cleaned = []
        for component in self.components:
            record = self.supervisor.read_pid(component.name)
            if self.supervisor.clean_stale(component.name):
                pid = record.pid if record else "?"
                self.report(
                    f"{component.name}: removed stale pid file "
                    f"{self.supervisor.pid_file(component.name)} (pid {pid} is not ours/running)"
                )
                cleaned.append(component.name)
        return cleaned

    async def _bring_up(self, component: Component) -> None:
        state, record = self.supervisor.state(component.name)
        if state is PidState.RUNNING and record is not None:
            self.report(f"{component.name}: already running (pid {record.pid})")
            await self._wait_healthy(component, child=None)
            await component.bootstrap()
            return
        started = time.monotonic()
        await asyncio.to_thread(component.prepare)
        child = self.supervisor.start(
            component.name, component.command(), component.env(), component.cwd()
        )
        self._children[component.name] = child
        self.report(f"{component.name}: started (pid {child.pid}), waiting until healthy")
        await self._wait_healthy(component, child)
        await component.bootstrap()
        elapsed = time.monotonic() - started
        self.report(f"{component.name}: healthy at {component.address} ({elapsed:.1f}s)")

    async def _wait_healthy(
        self, component: Component, child: subprocess.Popen[bytes] | None
    ) -> None:
        deadline = time.monotonic() + component.startup_timeout
        last_error = "no answer yet"
        while True:
            exit_code = child.poll() if child is not None else None
            if exit_code is not None or (
                child is None and self.supervisor.state(component.name)[0] is not PidState.RUNNING
            ):
                raise self._unhealthy(component, f"exited (code {exit_code}) while starting")
            try:
                async with asyncio.timeout(STATUS_PROBE_SECONDS):
                    await component.probe()
                return
            except Exception as error:  # any failed probe just means "not yet"
                last_error = describe_error(error)
            if time.monotonic() > deadline:
                raise self._unhealthy(
                    component, f"no healthy answer within {component.startup_timeout:.0f}s "
                    f"(last: {last_error})"
                )  # fmt: skip
            await asyncio.sleep(HEALTH_POLL_SECONDS)

    def _unhealthy(self, component: Component, reason: str) -> ComponentUnhealthyError:
        return ComponentUnhealthyError(
            component.name,
            reason,
            str(self.supervisor.log_file(component.name)),
            self.supervisor.log_tail(component.name),
        )

    async def _stop_started(self) -> None:
        started = [c for c in self.components if c.name in self._children]
        await self._stop(started)

    # --- supervise (foreground) -------------------------------------------------------------

    async def supervise(self, stop: asyncio.Event, poll_seconds: float = 1.0) -> None:
        """Return when ``stop`` is set; raise if a component exits on its own meanwhile."""
        while not stop.is_set():
            for component in self.components:
                child = self._children.get(component.name)
                exited = child.poll() is not None if child is not None else (
                    self.supervisor.state(component.name)[0] is not PidState.RUNNING
                )  # fmt: skip
                if exited:
                    code = child.returncode if child is not None else None
                    raise self._unhealthy(component, f"exited unexpectedly (code {code})")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), poll_seconds)

    # --- status -----------------------------------------------------------------------------

    def recorded_selection(self) -> list[str] | None:
        """The components the last `up` on this data dir started, if recorded."""
        try:
            return parse_selection(
                json.loads(self.selection_file.read_text())["components"], self.names
            )
        except (OSError, ValueError, KeyError, StackError):
            return None

    def recorded_topology(self) -> Topology | None:
        """The topology the last `up` on this data dir started (records without one: dev)."""
        try:
            return Topology(json.loads(self.selection_file.read_text()).get("topology", "dev"))
        except (OSError, ValueError, AttributeError):
            return None

    async def status(self) -> list[ComponentStatus]:
        return list(await asyncio.gather(*(self._status(c) for c in self.components)))

    async def _status(self, component: Component) -> ComponentStatus:
        state, record = self.supervisor.state(component.name)
        if state is PidState.STOPPED:
            return ComponentStatus(component.name, Health.STOPPED, None, component.address)
        if state is PidState.STALE or record is None:
            return ComponentStatus(
                component.name, Health.STOPPED, None, component.address,
                f"stale pid file {self.supervisor.pid_file(component.name)}",
            )  # fmt: skip
        try:
            async with asyncio.timeout(STATUS_PROBE_SECONDS):
                await component.probe()
        except Exception as error:  # reported, not raised: status shows every component
            return ComponentStatus(
                component.name, Health.UNHEALTHY, record.pid, component.address,
                describe_error(error),
            )  # fmt: skip
        return ComponentStatus(component.name, Health.HEALTHY, record.pid, component.address)

    # --- down -------------------------------------------------------------------------------

    async def down(self) -> list[str]:
        """Stop every selected component (apps first, then infrastructure); idempotent.

        Returns the names of the components that were running.
        """
        stopped = await self._stop(self.components)
        if set(self.selected) == set(self.names) or not any(
            self.supervisor.state(name)[0] is PidState.RUNNING for name in self.names
        ):
            self.selection_file.unlink(missing_ok=True)
        return stopped

    async def _stop(self, components: list[Component]) -> list[str]:
        stopped: list[str] = []
        for phase in sorted({c.phase for c in components}, reverse=True):
            batch = [c for c in components if c.phase == phase]
            results = await asyncio.gather(
                *(asyncio.to_thread(self.supervisor.stop, c.name, c.stop_timeout) for c in batch)
            )
            for component, was_running in zip(batch, results, strict=True):
                self._children.pop(component.name, None)
                if was_running:
                    stopped.append(component.name)
                    self.report(f"{component.name}: stopped")
        return stopped


async def run_all(coroutines: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run concurrently; on the first failure cancel the rest and raise that failure."""
    tasks = [asyncio.create_task(coroutine) for coroutine in coroutines]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            error = task.exception()
            if error is not None:
                raise error
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
