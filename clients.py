"""Connections to Temporal and Kafka, built from the one settings object."""

from __future__ import annotations

import ssl
from typing import Any

from temporalio.client import Client, TLSConfig
from temporalio.contrib.pydantic import pydantic_data_converter

from settings import KafkaSettings, Settings, TemporalSettings


def _temporal_tls(cfg: TemporalSettings) -> TLSConfig | bool:
    if cfg.tls_client_cert_path or cfg.tls_server_root_ca_path:
        return TLSConfig(
            client_cert=cfg.tls_client_cert_path.read_bytes() if cfg.tls_client_cert_path else None,
            client_private_key=(
                cfg.tls_client_key_path.read_bytes() if cfg.tls_client_key_path else None
            ),
            server_root_ca_cert=(
                cfg.tls_server_root_ca_path.read_bytes() if cfg.tls_server_root_ca_path else None
            ),
        )
    # An API key (Temporal Cloud) always travels over TLS.
    return cfg.tls or cfg.api_key is not None


async def connect_temporal(settings: Settings, *, lazy: bool = False) -> Client:
    cfg = settings.temporal
    return await Client.connect(
        cfg.address,
        namespace=cfg.namespace,
        api_key=cfg.api_key.get_secret_value() if cfg.api_key else None,
        tls=_temporal_tls(cfg),
        data_converter=pydantic_data_converter,
        lazy=lazy,
    )


def kafka_client_options(cfg: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments for aiokafka clients (producer, consumer, admin)."""
    options: dict[str, Any] = {
        "bootstrap_servers": cfg.bootstrap_servers,
        "security_protocol": cfg.security_protocol,
    }
    if cfg.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl.create_default_context(
            cafile=str(cfg.ssl_cafile) if cfg.ssl_cafile else None
        )
    if cfg.security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = cfg.sasl_mechanism or "PLAIN"
        options["sasl_plain_username"] = cfg.sasl_username
        options["sasl_plain_password"] = (
            cfg.sasl_password.get_secret_value() if cfg.sasl_password else None
        )
    return options
