"""Integration fixtures: the embedded stack's real Kafka broker and Temporal dev server.

Started once per session by the same code as `accord stack up`, on free ports with an
isolated data dir, and stopped at the end of the session whatever happened.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from clients import connect_temporal
from settings import Settings
from stack.isolated import isolated_settings
from stack.orchestrator import INFRASTRUCTURE, Stack

INTEGRATION_NAMESPACE = "accord-it"  # not "default", so namespace handling is exercised


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for an embedded stack on fresh free ports in ``data_dir``."""
    temporal = {"namespace": INTEGRATION_NAMESPACE, **overrides.pop("temporal", {})}
    return isolated_settings(data_dir, temporal=temporal, **overrides)


@pytest.fixture(scope="session")
def settings_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Settings]:
    """Build Settings for another, independent embedded stack (own ports and data dir)."""

    def build(**overrides: Any) -> Settings:
        return make_settings(tmp_path_factory.mktemp("stack"), **overrides)

    return build


@pytest.fixture(scope="session")
async def embedded_stack(settings_factory: Callable[..., Settings]) -> AsyncIterator[Stack]:
    """Kafka + Temporal dev server running (topics created, search attributes registered)."""
    running = Stack(settings_factory(), only=INFRASTRUCTURE)
    try:
        await running.up()
        yield running
    finally:
        await running.down()


@pytest.fixture(scope="session")
def stack_settings(embedded_stack: Stack) -> Settings:
    """The Settings of the running embedded stack: pass them to the code under test."""
    return embedded_stack.settings


@pytest.fixture(scope="session")
async def temporal_client(stack_settings: Settings) -> Client:
    """A client of the embedded Temporal, in its namespace, with the pydantic data converter."""
    return await connect_temporal(stack_settings)


APPS = ("worker", "stream", "core-banking", "esign", "contact", "webhooks")


@pytest.fixture(scope="session")
async def stack_apps(embedded_stack: Stack) -> AsyncIterator[Stack]:
    """Opt-in: the worker, the stream processor and the embedded external systems (core
    banking, e-signature, contact gateway, webhook receiver) as supervised processes against
    the embedded stack; healthy when yielded. Started once for the session, as a deployment
    runs them (restarts are the subject of their own tests, on their own stacks)."""
    apps = Stack(embedded_stack.settings, only=APPS)
    try:
        await apps.up()
        yield apps
    finally:
        await apps.down()
