"""Settings for a throw-away embedded stack: own data dir, fresh free ports, nothing inherited.

Used by the integration fixtures and the benchmarks, so neither can reach a developer's stack.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from settings import KafkaSettings, Settings, TemporalClusterPorts, TemporalSettings
from stack.ports import pick_free_ports, pick_free_ports_in, split_host_port


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
    (
        kafka_port, controller_port, temporal_port, ui_port, web_port,
        core_banking_port, esign_port, contact_port, webhooks_port, health_port, metrics_port,
        desk_port,
    ) = pick_free_ports(12, host)  # fmt: skip
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "temporal": {"address": f"{host}:{temporal_port}", "ui_port": ui_port},
        "kafka": {"bootstrap_servers": f"{kafka_host}:{kafka_port}"},
        "streams": {"web_port": web_port},
        "worker": {"listen_host": host, "health_port": health_port, "metrics_port": metrics_port},
        "stack": {"kafka_controller_port": controller_port},
        "core_banking": {"url": f"http://{host}:{core_banking_port}"},
        "esign": {"url": f"http://{host}:{esign_port}"},
        "contact": {"url": f"http://{host}:{contact_port}"},
        "webhooks": {"host": host, "port": webhooks_port},
        "desk": {"host": host, "port": desk_port},
        # The CLI's `accord login` token: never the developer's own.
        "staff": {"token_file": data_dir / "staff" / "cli-token"},
    }
    for key, value in overrides.items():
        values[key] = values.get(key, {}) | value if isinstance(value, dict) else value
    return IsolatedSettings(**values)


def isolated_cluster_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for the cluster topology on fresh ports in ``data_dir``, as its apps see them
    (``kafka.bootstrap_servers`` lists every broker). Under root ``data_dir``'s parents must be
    enterable by the ``postgres`` user (stack.postgres)."""
    from stack.cluster import app_settings

    host = split_host_port(TemporalSettings().address)[0]
    ports = iter(pick_free_ports(30, host))
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "temporal": {"address": f"{host}:{next(ports)}", "ui_port": next(ports)},
        "stack": {
            "cluster": {
                "postgres_port": next(ports),
                "kafka_brokers": [f"{host}:{next(ports)}" for _ in range(3)],
                "kafka_controller_ports": [next(ports) for _ in range(3)],
                "stream_web_ports": [next(ports) for _ in range(2)],
                "worker_health_ports": [next(ports) for _ in range(2)],
                "worker_metrics_ports": [next(ports) for _ in range(2)],
                "temporal_ports": temporal_ports(host),
            }
        },
        "streams": {"web_port": next(ports)},
        "worker": {"listen_host": host, "health_port": next(ports), "metrics_port": next(ports)},
        "desk": {"host": host, "port": next(ports)},
    }
    for key, value in overrides.items():
        values[key] = values.get(key, {}) | value if isinstance(value, dict) else value
    return app_settings(IsolatedSettings(**values))


def temporal_ports(host: str) -> dict[str, int]:
    """Fresh internal ports for the Temporal server, below 32768: its cluster_membership table
    keeps the membership port in a smallint."""
    names = list(TemporalClusterPorts.model_fields)
    return dict(zip(names, pick_free_ports_in(len(names), host, 20_000, 32_767), strict=True))
