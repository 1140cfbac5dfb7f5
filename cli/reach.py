"""One line instead of a traceback when the stack the CLI talks to is not there."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import click
from aiokafka.errors import KafkaConnectionError

from settings import Settings

T = TypeVar("T")

STATUS_HINT = "is the stack running? `accord stack status`"


def run_against_stack(settings: Settings, work: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(work)``; Kafka or Temporal out of reach becomes a one-line ClickException."""
    try:
        return asyncio.run(work)
    except KafkaConnectionError:
        raise click.ClickException(
            f"cannot reach Kafka at {settings.kafka.bootstrap_servers} — {STATUS_HINT}"
        ) from None
    except RuntimeError as error:
        # The SDK's bridge reports a refused or unreachable server only as this message.
        if "Failed client connect" not in str(error):
            raise
        raise click.ClickException(
            f"cannot reach Temporal at {settings.temporal.address} — {STATUS_HINT}"
        ) from None
