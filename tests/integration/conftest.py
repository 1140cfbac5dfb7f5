"""Integration fixtures: the embedded stack's real Kafka broker and Temporal dev server.

Started once per session by the same code as `accord stack up`, on free ports with an
isolated data dir, and stopped at the end of the session whatever happened.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from clients import connect_temporal
from settings import Settings
from stack.isolated import isolated_settings
from stack.orchestrator import INFRASTRUCTURE, Stack

INTEGRATION_NAMESPACE = "accord-it"  # not "default", so namespace handling is exercised


def midday_time_zone(now: datetime | None = None) -> str:
    """A fixed-offset IANA zone where it is about noon now: the embedded directory gives the
    borrowers this zone, so a case's first contact is never held back by the pack's quiet hours
    (22:00-08:00 local) whatever the hour the tests run at."""
    hour = (now or datetime.now(UTC)).hour
    offset = 12 - hour  # local = UTC + offset, from -11 to +12
    # IANA's Etc zones count the other way round: Etc/GMT-8 is UTC+8.
    return "Etc/UTC" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for an embedded stack on fresh free ports in ``data_dir``."""
    temporal = {"namespace": INTEGRATION_NAMESPACE, **overrides.pop("temporal", {})}
    core_banking = {"contact_time_zone": midday_time_zone(), **overrides.pop("core_banking", {})}
    return isolated_settings(data_dir, temporal=temporal, core_banking=core_banking, **overrides)


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
