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
from stack.errors import StackError
from stack.kafka import fetch_kafka_jars, jars_present, kafka_libs_dir
from stack.orchestrator import COMPONENT_NAMES, ComponentStatus, Health, Stack

T = TypeVar("T")
console = Console(highlight=False)
ONLY_HELP = f"Comma-separated subset of: {','.join(COMPONENT_NAMES)} (default: all)."


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
    """Run the dev stack without Docker: Kafka, Temporal, worker, stream, and the embedded
    core banking, e-signature, contact gateway and webhook receiver.

    Every component runs under supervisord (one per data dir, logs under <data_dir>/logs): one
    that dies is restarted with back-off while the others keep running."""


@stack.command()
@click.option("--detach", is_flag=True, help="Return once healthy; leave the stack running.")
@click.option("--only", default=None, help=ONLY_HELP)
def up(detach: bool, only: str | None) -> None:
    """Start the stack and wait until every component is healthy."""
    settings = get_settings()

    async def foreground() -> None:
        the_stack = Stack(settings, only=only, report=report)
        if "kafka" in the_stack.selected and not jars_present(settings.stack.kafka_version):
            report("resolving the Kafka broker jars with Maven (first run only, ~30 s)")
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
def status(only: str | None) -> None:
    """Report each component; exit 1 if any is not running and healthy."""
    settings = get_settings()

    async def check() -> list[ComponentStatus]:
        selection = only or Stack(settings).recorded_selection()
        return await Stack(settings, only=selection).status()

    statuses = run(check)
    print_statuses(statuses)
    if any(s.health is not Health.HEALTHY for s in statuses):
        raise SystemExit(1)


@stack.command()
def down() -> None:
    """Stop every component cleanly (safe to run when nothing is running)."""
    settings: Settings = get_settings()
    stopped = run(lambda: Stack(settings, report=report).down())
    console.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@stack.command()
def fetch() -> None:
    """Resolve the Kafka broker jars with Maven into the user cache (once)."""
    version = get_settings().stack.kafka_version
    if jars_present(version):
        console.print(f"Kafka {version} jars already in {kafka_libs_dir(version)}")
        return
    started = time.monotonic()
    try:
        libs = fetch_kafka_jars(version)
    except StackError as error:
        console.print(f"[red]error:[/red] {error}", soft_wrap=True)
        raise SystemExit(1) from None
    console.print(f"Kafka {version} jars in {libs} ({time.monotonic() - started:.1f}s)")
