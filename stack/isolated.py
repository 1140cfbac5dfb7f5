"""Settings for a throw-away embedded stack: own data dir, fresh free ports, nothing inherited.

Used by the integration fixtures and the benchmarks, so neither can reach a developer's stack.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from settings import KafkaSettings, Settings, TemporalSettings
from stack.ports import pick_free_ports, split_host_port


class IsolatedSettings(Settings):
    """Settings from constructor arguments only: a developer's ACCORD_* variables or .env
    must not point a test or a benchmark at their own stack."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        **_: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def isolated_settings(data_dir: Path, **overrides: Any) -> Settings:
    """The default hosts with fresh ports in ``data_dir``; ``overrides`` merge one level deep
    (``temporal={"namespace": "x"}`` keeps the fresh address)."""
    host = split_host_port(TemporalSettings().address)[0]
    kafka_host = split_host_port(KafkaSettings().bootstrap_servers)[0]
    kafka_port, controller_port, temporal_port, ui_port, web_port, health_port, metrics_port = (
        pick_free_ports(7, host)
    )
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "temporal": {"address": f"{host}:{temporal_port}", "ui_port": ui_port},
        "kafka": {"bootstrap_servers": f"{kafka_host}:{kafka_port}"},
        "streams": {"web_port": web_port},
        "worker": {"listen_host": host, "health_port": health_port, "metrics_port": metrics_port},
        "stack": {"kafka_controller_port": controller_port},
    }
    for key, value in overrides.items():
        values[key] = values.get(key, {}) | value if isinstance(value, dict) else value
    return IsolatedSettings(**values)
