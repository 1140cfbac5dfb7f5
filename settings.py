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
    # Copies of each partition on distinct brokers: 1 on the single dev broker; the cluster
    # topology (stack.cluster) and production run 3, with min.insync.replicas 2 set on the
    # brokers, so it holds for the topics faust creates too (the tables' changelogs).
    replication_factor: int = Field(default=1, ge=1)

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


class TemporalClusterPorts(BaseModel):
    """The Temporal server's internal ports (its frontend is ``temporal.address``). Named as the
    server's own config template names them (``FRONTEND_HTTP_PORT`` ...); the defaults are
    Temporal's."""

    frontend_http: int = 7243
    frontend_membership: int = 6933
    history_grpc: int = 7234
    history_membership: int = 6934
    matching_grpc: int = 7235
    matching_membership: int = 6935
    worker_grpc: int = 7239
    worker_membership: int = 6939


class ClusterSettings(BaseModel):
    """`accord stack up --topology cluster`: the production shape on one machine, no Docker.

    The Temporal server built from its Go module on PostgreSQL (persistence and SQL visibility),
    three KRaft brokers, two workers, two stream processors and the Temporal UI. The client-facing
    addresses are ``temporal.address`` (frontend), ``temporal.ui_port`` and ``kafka_brokers``
    (the apps the stack starts get all three as ``kafka.bootstrap_servers``). docker-compose.yml
    describes the same shape; tests/unit/test_compose.py keeps the two in step."""

    # go.temporal.io/server and github.com/temporalio/ui-server/v2 module versions (the newest
    # this machine's Go toolchain builds): built once into the user cache dir.
    temporal_version: str = "1.30.8"
    temporal_ui_version: str = "2.55.0"
    history_shards: int = Field(default=4, ge=1)
    temporal_ports: TemporalClusterPorts = Field(default_factory=TemporalClusterPorts)
    # Debian's package; the major version is the compose file's `postgres:` image tag.
    postgres_major: int = 15
    # Not 5432: installing Debian's package starts a cluster of its own there.
    postgres_port: int = 5433
    postgres_user: str = "temporal"
    postgres_password: SecretStr = SecretStr("temporal")
    # host:port of each broker's client listener, and each one's controller port.
    kafka_brokers: list[str] = Field(
        default_factory=lambda: ["127.0.0.1:9092", "127.0.0.1:9094", "127.0.0.1:9096"],
        min_length=3,
    )
    kafka_controller_ports: list[int] = Field(
        default_factory=lambda: [9093, 9095, 9097], min_length=3
    )
    replication_factor: int = 3
    min_insync_replicas: int = 2
    workers: int = Field(default=2, ge=1)
    stream_processors: int = Field(default=2, ge=1)
    # One port per instance: each worker's health and SDK metrics, each processor's faust web.
    worker_health_ports: list[int] = Field(default_factory=lambda: [6067, 6077])
    worker_metrics_ports: list[int] = Field(default_factory=lambda: [9464, 9474])
    stream_web_ports: list[int] = Field(default_factory=lambda: [6066, 6076])


class StackSettings(BaseModel):
    """The embedded (no Docker) development stack. Its Kafka and Temporal ports are the ones in
    ``kafka.bootstrap_servers`` and ``temporal.address``."""

    kafka_controller_port: int = 9093
    kafka_version: str = "4.1.1"
    kafka_heap: str = "-Xmx512m -Xms256m"
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)


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
