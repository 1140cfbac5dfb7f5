"""Connections to Temporal and Kafka, built from the one settings object."""

from __future__ import annotations

import dataclasses
import ssl
from typing import Any

from temporalio.client import Client, TLSConfig
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter, pydantic_data_converter
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
)
from temporalio.runtime import Runtime

from encryption.codec import EncryptionCodec, parse_key
from settings import EncryptionSettings, KafkaSettings, Settings, TemporalSettings


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


def payload_codec(cfg: EncryptionSettings) -> EncryptionCodec | None:
    if cfg.key is None:
        return None
    retired = {kid: parse_key(k.get_secret_value(), kid) for kid, k in cfg.retired_keys.items()}
    return EncryptionCodec(cfg.key_id, parse_key(cfg.key.get_secret_value(), cfg.key_id), retired)


# The worker makes a new payload converter for every workflow it loads, so a converter's own
# type-adapter cache is rebuilt (about 50 KiB and a few ms per cached case, bench/README.md):
# every payload converter shares this one JSON converter and its cache instead.
_SHARED_JSON = PydanticJSONPlainPayloadConverter()


class SharedPydanticPayloadConverter(CompositePayloadConverter):
    """Temporal's pydantic payload converter, with one type-adapter cache per process."""

    def __init__(self) -> None:
        super().__init__(
            *(
                _SHARED_JSON if isinstance(c, JSONPlainPayloadConverter) else c
                for c in DefaultPayloadConverter.default_encoding_payload_converters
            )
        )


PYDANTIC_CONVERTER = dataclasses.replace(
    pydantic_data_converter, payload_converter_class=SharedPydanticPayloadConverter
)
"""Pydantic JSON payloads (models, Decimal, dates) for every client, worker and test."""


def data_converter(settings: Settings) -> DataConverter:
    """Pydantic JSON payloads, encrypted when a key is configured."""
    codec = payload_codec(settings.encryption)
    if codec is None:
        return PYDANTIC_CONVERTER
    return dataclasses.replace(PYDANTIC_CONVERTER, payload_codec=codec)


async def connect_temporal(
    settings: Settings,
    *,
    lazy: bool = False,
    runtime: Runtime | None = None,
    identity: str | None = None,
) -> Client:
    cfg = settings.temporal
    options: dict[str, Any] = {"runtime": runtime} if runtime is not None else {}
    if identity is not None:
        options["identity"] = identity
    return await Client.connect(
        cfg.address,
        namespace=cfg.namespace,
        api_key=cfg.api_key.get_secret_value() if cfg.api_key else None,
        tls=_temporal_tls(cfg),
        data_converter=data_converter(settings),
        lazy=lazy,
        **options,
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
