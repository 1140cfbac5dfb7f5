"""The one typed settings object. Every address, credential and name comes from here.

Read from environment variables prefixed ``ACCORD_`` (nested with ``__``) or a ``.env``
file in the working directory, e.g. ``ACCORD_TEMPORAL__ADDRESS=temporal:7233``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class TemporalSettings(BaseModel):
    address: str = "127.0.0.1:7233"
    namespace: str = "default"
    task_queue: str = "accord-cases"
    # Temporal Cloud: either mTLS (cert + key) or an API key.
    tls: bool = False
    tls_client_cert_path: Path | None = None
    tls_client_key_path: Path | None = None
    tls_server_root_ca_path: Path | None = None
    api_key: SecretStr | None = None
    ui_port: int = 8233


class WorkerSettings(BaseModel):
    """The Temporal worker (`accord worker`). Defaults from bench/README.md's measurements."""

    # Cached cases (memory vs. replay cost on a cache miss).
    max_cached_workflows: int = Field(default=2_000, ge=0)
    # Workflow tasks run at once. They share one Python thread, so more slots only queue tasks
    # behind each other until they time out; a burst is absorbed by the server's queue instead.
    max_concurrent_workflow_tasks: int = Field(default=8, ge=2)
    max_concurrent_activities: int = Field(default=64, ge=1)
    # Prometheus metrics of the Temporal SDK (task latencies, slots, cache) and GET /health
    # (200 once this worker process has polled its task queue), on this interface.
    listen_host: str = "127.0.0.1"
    metrics_port: int = 9464
    health_port: int = 6067
    # On SIGTERM: stop polling, let running activities finish for this long, then exit.
    graceful_shutdown_seconds: float = Field(default=20.0, ge=0)


class KafkaTopics(BaseModel):
    overdue: str = "loan.overdue.v1"
    payment: str = "loan.payment.v1"
    status: str = "loan.status.v1"
    hardship: str = "customer.hardship.v1"
    case_events: str = "case.events.v1"
    dlq_suffix: str = ".dlq"
    # Every loan-keyed topic (inbound, case events, dead letters, the stream's table changelogs)
    # has this many partitions: the stream's tables are co-partitioned with its topics by it.
    partitions: int = 6
    # Of the topics Accord creates itself (the stream's table changelogs): 3 and 2 in production.
    replication_factor: int = Field(default=1, ge=1)
    min_insync_replicas: int = Field(default=1, ge=1)

    def inbound(self) -> list[str]:
        return [self.overdue, self.payment, self.status, self.hardship]

    def dlq(self, topic: str) -> str:
        return f"{topic}{self.dlq_suffix}"


class KafkaSettings(BaseModel):
    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    consumer_group: str = "accord-streams"
    topics: KafkaTopics = Field(default_factory=KafkaTopics)


class StreamsSettings(BaseModel):
    """The faust stream processor."""

    web_port: int = 6066  # faust web: /stats, /metrics (Prometheus)
    # Events handled concurrently per batch; its offsets commit only once all are in Temporal.
    batch_size: int = 64
    # How long a batch waits to fill before it is delivered anyway: latency vs. batching.
    batch_linger_seconds: float = Field(default=0.05, gt=0, le=5)
    # Event ids Temporal accepted, remembered so a redelivery skips the round trip (a cache: the
    # case's own event-id check is the guarantee, and after a restart it is all there is).
    remembered_event_ids: int = Field(default=200_000, ge=0)
    retry_initial_seconds: float = 0.2
    retry_max_seconds: float = 10.0
    # A processor that dies without leaving the group holds its partitions this long.
    session_timeout_seconds: float = 30.0


class StackSettings(BaseModel):
    """The embedded (no Docker) development stack. Its Kafka and Temporal ports are the ones in
    ``kafka.bootstrap_servers`` and ``temporal.address``."""

    kafka_controller_port: int = 9093
    kafka_version: str = "4.1.1"
    kafka_heap: str = "-Xmx512m -Xms256m"


class EncryptionSettings(BaseModel):
    """Payload encryption (AES-256-GCM). Without a key, payloads are stored in clear: dev only."""

    key: SecretStr | None = None  # base64 of 32 bytes; `accord codec new-key` makes one
    key_id: str = "accord-1"
    retired_keys: dict[str, SecretStr] = Field(default_factory=dict)  # key id -> key, decode only
    codec_server_port: int = 8234
    # Staff present this bearer token (the Temporal UI forwards it) to see decrypted payloads.
    codec_server_token: SecretStr | None = None
    ui_origin: str = "http://localhost:8233"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ACCORD_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    data_dir: Path = Path(".data")
    policy_file: Path | None = None  # None: the bundled default policy
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    temporal: TemporalSettings = Field(default_factory=TemporalSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    streams: StreamsSettings = Field(default_factory=StreamsSettings)
    encryption: EncryptionSettings = Field(default_factory=EncryptionSettings)
    stack: StackSettings = Field(default_factory=StackSettings)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
