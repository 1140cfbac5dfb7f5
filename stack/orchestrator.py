"""The embedded stack as a whole: bring components up in dependency order, report, tear down.

The processes run under supervisord (``stack.supervision``): a component that dies is restarted
with back-off while the others keep running, in the foreground as detached; `status` reports
what happened (restarts, last exit).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
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
from stack.processes import PidState, write_atomically
from stack.services import (
    ContactService,
    CoreBankingService,
    DeskService,
    ESignService,
    WebhookReceiver,
)
from stack.supervision import ALIVE_STATES, Supervisord
from stack.temporal import TemporalDevServer

COMPONENT_TYPES: dict[str, type[Component]] = {
    cls.name: cls
    for cls in (
        KafkaBroker,
        TemporalDevServer,
        TemporalWorker,
        StreamProcessor,
        CoreBankingService,
        ESignService,
        ContactService,
        WebhookReceiver,
        DeskService,
    )
}
COMPONENT_NAMES = tuple(COMPONENT_TYPES)
INFRASTRUCTURE = ("kafka", "temporal")


class Topology(StrEnum):
    """``dev``: one broker, the Temporal dev server on SQLite, one worker, one stream processor
    and the embedded services. ``cluster``: the production shape (stack.cluster)."""

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
    restarts: int = 0
    """Times supervision restarted it since it was last brought up."""
    last_exit: str = ""


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
        self.supervisor = Supervisord(settings.data_dir.resolve())
        self.topology = Topology(topology)
        self.available = topology_components(settings, self.topology)
        self.names = tuple(component.name for component in self.available)
        self.selected = parse_selection(only, self.names)
        self.components = [c for c in self.available if c.name in self.selected]
        self.report = report or (lambda message: None)
        self._started: set[str] = set()  # started by this object

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
            await asyncio.to_thread(self._ensure_supervisord)
            for phase in sorted({component.phase for component in self.components}):
                await run_all(
                    self._bring_up(component)
                    for component in self.components
                    if component.phase == phase
                )
        except BaseException:
            await self._stop_started()
            if not await asyncio.to_thread(self.supervisor.any_alive):
                await asyncio.to_thread(self.supervisor.shutdown)
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
        for component in self.components:
            if self.supervisor.state(component.name)[0] is not PidState.RUNNING:
                for claim in component.port_claims():
                    claim.ensure_free()

    def _ensure_supervisord(self) -> None:
        """Every known component is a program (none starts by itself): a later `up` of another
        selection on this data dir finds it configured."""
        programs = [(component.name, component.stop_timeout) for component in self.available]
        self.supervisor.write_config(programs)
        self.supervisor.ensure_daemon()

    async def _bring_up(self, component: Component) -> None:
        state, record = self.supervisor.state(component.name)
        if state is PidState.RUNNING and record is not None:
            self.report(f"{component.name}: already running (pid {record.pid})")
            await self._wait_healthy(component, started=False)
            await component.bootstrap()
            return
        started = time.monotonic()
        await asyncio.to_thread(component.prepare)
        self.supervisor.write_launch(
            component.name, component.command(), component.env(), component.cwd()
        )
        self.supervisor.reset_history(component.name)
        await asyncio.to_thread(self.supervisor.start, component.name)
        self._started.add(component.name)
        record = self.supervisor.read_pid(component.name)
        pid = record.pid if record else "?"
        self.report(f"{component.name}: started (pid {pid}), waiting until healthy")
        await self._wait_healthy(component, started=True)
        await component.bootstrap()
        elapsed = time.monotonic() - started
        self.report(f"{component.name}: healthy at {component.address} ({elapsed:.1f}s)")

    async def _wait_healthy(self, component: Component, started: bool) -> None:
        deadline = time.monotonic() + component.startup_timeout
        last_error = "no answer yet"
        while True:
            info = await asyncio.to_thread(self.supervisor.info, component.name)
            if info is None or info.state not in ("STARTING", "RUNNING"):
                # Died while starting (supervisord would retry it): report instead.
                if started:
                    await asyncio.to_thread(self.supervisor.stop, component.name)
                    self._started.discard(component.name)
                state = info.description if info is not None else "not running"
                raise self._unhealthy(component, f"exited while starting ({state})")
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
        started = [c for c in self.components if c.name in self._started]
        await self._stop(started)

    # --- supervise (foreground) -------------------------------------------------------------

    async def supervise(self, stop: asyncio.Event, poll_seconds: float = 1.0) -> None:
        """Return when ``stop`` is set, reporting each restart supervision makes meanwhile
        (a component that dies is restarted; the others keep running)."""
        seen = {c.name: self.supervisor.history(c.name).restarts for c in self.components}
        while not stop.is_set():
            for component in self.components:
                history = self.supervisor.history(component.name)
                if history.restarts > seen[component.name]:
                    seen[component.name] = history.restarts
                    self.report(f"{component.name}: {history.describe()}")
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
        info = await asyncio.to_thread(self.supervisor.info, component.name)
        history = self.supervisor.history(component.name)
        seen = {"restarts": history.restarts, "last_exit": history.describe()}
        if info is None or info.state not in ALIVE_STATES:
            detail = f"{info.state.lower()}: {info.description}" if info and info.state in (
                "FATAL", "EXITED") else ""  # fmt: skip
            return ComponentStatus(
                component.name, Health.STOPPED, None, component.address, detail, **seen
            )
        pid = info.pid or None
        if info.state != "RUNNING":
            return ComponentStatus(
                component.name, Health.UNHEALTHY, pid, component.address,
                f"{info.state.lower()} (supervision is restarting it)", **seen,
            )  # fmt: skip
        try:
            async with asyncio.timeout(STATUS_PROBE_SECONDS):
                await component.probe()
        except Exception as error:  # reported, not raised: status shows every component
            return ComponentStatus(
                component.name, Health.UNHEALTHY, pid, component.address,
                describe_error(error), **seen,
            )  # fmt: skip
        return ComponentStatus(component.name, Health.HEALTHY, pid, component.address, **seen)

    # --- down -------------------------------------------------------------------------------

    async def down(self) -> list[str]:
        """Stop every selected component (apps first, then infrastructure); idempotent.

        Returns the names of the components that were running.
        """
        stopped = await self._stop(self.components)
        if not await asyncio.to_thread(self.supervisor.any_alive):
            await asyncio.to_thread(self.supervisor.shutdown)
            self.selection_file.unlink(missing_ok=True)
        elif (recorded := self.recorded_selection()) is not None:
            # `status` goes on covering what is still up.
            remaining = [name for name in recorded if name not in self.selected]
            write_atomically(
                self.selection_file,
                json.dumps({"topology": self.topology.value, "components": remaining}),
            )
        return stopped

    async def _stop(self, components: list[Component]) -> list[str]:
        stopped: list[str] = []
        for phase in sorted({c.phase for c in components}, reverse=True):
            batch = [c for c in components if c.phase == phase]
            results = await asyncio.gather(
                *(asyncio.to_thread(self.supervisor.stop, c.name, c.stop_timeout) for c in batch)
            )
            for component, was_running in zip(batch, results, strict=True):
                self._started.discard(component.name)
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
