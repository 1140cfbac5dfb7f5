"""The ``accord`` command."""

from __future__ import annotations

import click


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


def _register_subcommands() -> None:
    # Each group lives with its concern; importing them here keeps `accord --help` complete.
    import importlib

    for module, name in (("cli.stack", "stack"),):
        try:
            group = getattr(importlib.import_module(module), name)
        except ModuleNotFoundError:
            continue
        main.add_command(group)


_register_subcommands()

if __name__ == "__main__":
    main()
