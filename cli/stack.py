"""`accord stack ...`: the embedded development stack (Kafka, Temporal dev server, worker, stream,
the embedded core banking, e-signature and contact gateway, the webhook receiver).

The lead's cli/main.py mounts it with ``main.add_command(stack)``.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from settings import Settings, get_settings
from stack.builds import cluster_builds, ensure_built
from stack.errors import StackError
from stack.kafka import fetch_kafka_jars, jars_present, kafka_libs_dir
from stack.orchestrator import COMPONENT_NAMES, ComponentStatus, Health, Stack, Topology

T = TypeVar("T")
console = Console(highlight=False)
ONLY_HELP = (
    f"Comma-separated subset of the topology's components (dev: {','.join(COMPONENT_NAMES)}; "
    "cluster: see `status --topology cluster`; default: all)."
)
TOPOLOGY_CHOICE = click.Choice([t.value for t in Topology])
TOPOLOGY_HELP = (
    "dev: one broker, the Temporal dev server (SQLite), one worker, one stream processor. "
    "cluster: the production shape — Temporal built from source on PostgreSQL, 3 brokers, "
    "2 workers, 2 stream processors, the UI (settings.stack.cluster)."
)


def topology_option(default: str | None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    suffix = "" if default else " Default: the topology the last `up` started, else dev."
    return click.option(
        "--topology", type=TOPOLOGY_CHOICE, default=default, help=TOPOLOGY_HELP + suffix
    )


def chosen_topology(settings: Settings, topology: str | None) -> Topology:
    if topology is not None:
        return Topology(topology)
    return Stack(settings).recorded_topology() or Topology.DEV


def report(message: str) -> None:
    console.print(f"[dim]·[/dim] {message}")


def print_statuses(statuses: list[ComponentStatus]) -> None:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("component", "state", "pid", "address", "restarts", "detail"):
        table.add_column(column)
    colours = {Health.HEALTHY: "green", Health.UNHEALTHY: "red", Health.STOPPED: "yellow"}
    for status in statuses:
        state = "running" if status.health is Health.HEALTHY else status.health.value
        table.add_row(
            status.name,
            f"[{colours[status.health]}]{state}[/]",
            str(status.pid or "-"),
            status.address,
            str(status.restarts),
            "; ".join(part for part in (status.detail, status.last_exit) if part),
        )
    console.print(table)


def run(coroutine_factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run an async stack operation; a StackError becomes a red message and exit code 1."""
    try:
        return asyncio.run(coroutine_factory())
    except StackError as error:
        console.print(f"[red]error:[/red] {error}", soft_wrap=True)
        raise SystemExit(1) from None


@click.group()
def stack() -> None:
    """Run the stack without Docker: Kafka, Temporal, workers, stream processors, and the embedded
    core banking, e-signature, contact gateway and webhook receiver.

    Two topologies: `dev` (Kafka in KRaft mode, the Temporal dev server, one worker, one stream
    processor) and `cluster` (the production shape on this machine). Every component runs under
    supervisord (one per data dir, logs under <data_dir>/logs): one that dies is restarted with
    back-off while the others keep running."""


@stack.command()
@click.option("--detach", is_flag=True, help="Return once healthy; leave the stack running.")
@click.option("--only", default=None, help=ONLY_HELP)
@topology_option("dev")
def up(detach: bool, only: str | None, topology: str) -> None:
    """Start the stack and wait until every component is healthy."""
    settings = get_settings()

    async def foreground() -> None:
        the_stack = Stack(settings, only=only, report=report, topology=topology)
        if not jars_present(settings.stack.kafka_version):
            report("resolving the Kafka broker jars with Maven (first run only, ~30 s)")
        if the_stack.topology is Topology.CLUSTER and not all(
            build.present() for build in cluster_builds(settings.stack.cluster)
        ):
            report("building the Temporal server and UI with Go (first run only, ~4 min)")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        started = time.monotonic()
        bring_up = asyncio.create_task(the_stack.up())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({bring_up, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not bring_up.done():  # interrupted while starting: up() stops what it started
            bring_up.cancel()
            await asyncio.gather(bring_up, return_exceptions=True)
            return
        stopping.cancel()
        print_statuses(bring_up.result())
        console.print(f"stack up in {time.monotonic() - started:.1f}s; logs in "
                      f"{the_stack.supervisor.log_dir}")  # fmt: skip
        if detach:
            return
        console.print("supervising (a component that dies is restarted); Ctrl-C stops everything")
        try:
            await the_stack.supervise(stop)
        finally:
            await the_stack.down()

    run(foreground)


@stack.command()
@click.option("--only", default=None, help=ONLY_HELP + " Default: what the last `up` started.")
@topology_option(None)
def status(only: str | None, topology: str | None) -> None:
    """Report each component; exit 1 if any is not running and healthy."""
    settings = get_settings()
    chosen = chosen_topology(settings, topology)

    async def check() -> list[ComponentStatus]:
        selection = only or Stack(settings, topology=chosen).recorded_selection()
        return await Stack(settings, only=selection, topology=chosen).status()

    statuses = run(check)
    print_statuses(statuses)
    if any(s.health is not Health.HEALTHY for s in statuses):
        raise SystemExit(1)


@stack.command()
@topology_option(None)
def down(topology: str | None) -> None:
    """Stop every component cleanly (safe to run when nothing is running)."""
    settings: Settings = get_settings()
    chosen = chosen_topology(settings, topology)
    stopped = run(lambda: Stack(settings, report=report, topology=chosen).down())
    console.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@stack.command()
@topology_option("dev")
def fetch(topology: str) -> None:
    """Resolve the Kafka broker jars with Maven into the user cache (once); for the cluster
    topology also build the Temporal server, its SQL tool and the UI with Go (once)."""
    settings = get_settings()
    version = settings.stack.kafka_version
    try:
        if jars_present(version):
            console.print(f"Kafka {version} jars already in {kafka_libs_dir(version)}")
        else:
            started = time.monotonic()
            libs = fetch_kafka_jars(version)
            console.print(f"Kafka {version} jars in {libs} ({time.monotonic() - started:.1f}s)")
        if Topology(topology) is Topology.CLUSTER:
            for build in cluster_builds(settings.stack.cluster):
                if build.present():
                    console.print(f"{build.module} v{build.version} already in {build.folder}")
                    continue
                console.print(f"building {build.module} v{build.version} with Go (niced) ...")
                started = time.monotonic()
                ensure_built(build)
                console.print(f"  built in {build.folder} ({time.monotonic() - started:.1f}s)")
    except StackError as error:
        console.print(f"[red]error:[/red] {error}", soft_wrap=True)
        raise SystemExit(1) from None
