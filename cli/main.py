"""The ``accord`` command."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from cli.case import case
from cli.codec import codec
from cli.dlq import dlq
from cli.service import service
from cli.simulate import simulate
from cli.stack import stack
from cli.staff import desk, login, logout, staff


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Accord: durable, compliant repayment negotiation for overdue loans."""


@main.command()
def worker() -> None:
    """Run the Temporal worker (cases) against the configured Temporal endpoint."""
    from worker import main as run

    run()


@main.command()
def stream() -> None:
    """Run the faust stream processor against the configured Kafka and Temporal."""
    from streams.app import main as run

    run()


@main.group()
def schemas() -> None:
    """Event contracts."""


@schemas.command("export")
@click.argument(
    "directory", type=click.Path(file_okay=False, path_type=Path), default="schemas-json"
)
def export_schemas(directory: Path) -> None:
    """Write the JSON Schema of every Kafka contract (for producers to validate against)."""
    from schemas.export import write_json_schemas

    for path in write_json_schemas(directory):
        click.echo(path)


for command in (stack, case, dlq, codec, simulate, service, desk, staff, login, logout):
    main.add_command(command)


def run() -> None:
    """Console entry point. Leaves without interpreter teardown: the Temporal client's native
    threads can abort a finalizing interpreter (temporalio/sdk-python#300), which would turn a
    successful command into a crash. Every command has finished its own clean-up by then."""
    try:
        main()
    except SystemExit as exit_:
        code = exit_.code
    else:
        code = 0
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else (0 if code is None else 1))


if __name__ == "__main__":
    run()
