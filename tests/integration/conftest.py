"""Integration fixtures: the embedded stack's real Kafka broker and Temporal dev server.

Started once per session by the same code as `accord stack up`, on free ports with an
isolated data dir, and stopped at the end of the session whatever happened.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource
from temporalio.client import Client

from clients import connect_temporal
from settings import KafkaSettings, Settings, TemporalSettings
from stack.orchestrator import INFRASTRUCTURE, Stack
from stack.ports import pick_free_ports, split_host_port

INTEGRATION_NAMESPACE = "accord-it"  # not "default", so namespace handling is exercised


class IsolatedSettings(Settings):
    """Settings from constructor arguments only: a developer's ACCORD_* variables or .env
    must not point tests at their own stack."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        **_: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for an embedded stack on fresh free ports in ``data_dir``."""
    # The hosts of the default settings, fresh ports.
    host = split_host_port(TemporalSettings().address)[0]
    kafka_host = split_host_port(KafkaSettings().bootstrap_servers)[0]
    kafka_port, controller_port, temporal_port, ui_port, web_port = pick_free_ports(5, host)
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "temporal": {
            "address": f"{host}:{temporal_port}",
            "ui_port": ui_port,
            "namespace": INTEGRATION_NAMESPACE,
        },
        "kafka": {"bootstrap_servers": f"{kafka_host}:{kafka_port}"},
        "streams": {"web_port": web_port},
        "stack": {"kafka_controller_port": controller_port},
    }
    for key, value in overrides.items():
        values[key] = values.get(key, {}) | value if isinstance(value, dict) else value
    return IsolatedSettings(**values)


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


@pytest.fixture(scope="session")
async def stack_apps(embedded_stack: Stack) -> AsyncIterator[Stack]:
    """Opt-in: the worker and the stream processor (`accord worker`, `accord stream`) as
    supervised child processes against the embedded stack; healthy when yielded."""
    apps = Stack(embedded_stack.settings, only=["worker", "stream"])
    try:
        await apps.up()
        yield apps
    finally:
        await apps.down()
