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
    # The contact centre's record of calls and conversations (into the borrower's contact ledger).
    contact_interaction: str = "contact.interaction.v1"
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
        return [self.overdue, self.payment, self.status, self.hardship, self.contact_interaction]

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


class ServiceClientSettings(BaseModel):
    """An external system reached over HTTP: the bank's own, or the embedded stand-in that
    `accord stack up` runs on this URL (loopback only). Token and mTLS paths are the client's
    credentials; the embedded service checks the same token when one is set."""

    url: str
    token: SecretStr | None = None  # sent as `Authorization: Bearer <token>`
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    tls_client_cert_path: Path | None = None  # mTLS: the client certificate (PEM)
    tls_client_key_path: Path | None = None
    tls_ca_path: Path | None = None  # verify the server against this CA bundle


class CoreBankingSettings(ServiceClientSettings):
    url: str = "http://127.0.0.1:8240"
    # The embedded service only: how long a read waits for its Kafka feed to catch up with what
    # was published before the request, before it answers 503 (retry later).
    sync_wait_seconds: float = Field(default=3.0, gt=0, le=60)
    contact_time_zone: str = "Asia/Shanghai"  # embedded directory: borrowers' time zone


class ESignSettings(ServiceClientSettings):
    url: str = "http://127.0.0.1:8241"
    # Where the provider posts completions; None: the embedded webhook receiver.
    callback_url: str | None = None
    # HMAC-SHA256 key the provider signs its callbacks with; None: unsigned (dev only).
    webhook_secret: SecretStr | None = None
    # The embedded service only: how often a failed callback is tried again before it gives up.
    callback_max_attempts: int = Field(default=30, ge=1, le=1000)


class ContactGatewaySettings(ServiceClientSettings):
    url: str = "http://127.0.0.1:8242"
    # How long a send waits (polling) for the final delivery or answer status.
    status_wait_seconds: float = Field(default=10.0, gt=0, le=120)
    status_poll_seconds: float = Field(default=0.2, gt=0, le=10)
    # The embedded service only: seconds until a message is delivered or a call answered;
    # whether its calls are answered.
    delivery_seconds: float = Field(default=0.3, ge=0, le=60)
    phone_answered: bool = False


class WebhookSettings(BaseModel):
    """Accord's own webhook receiver (`accord service run webhooks`): providers call it."""

    host: str = "127.0.0.1"
    port: int = 8243


class EncryptionSettings(BaseModel):
    """Payload encryption (AES-256-GCM). Without a key, payloads are stored in clear: dev only."""

    key: SecretStr | None = None  # base64 of 32 bytes; `accord codec new-key` makes one
    key_id: str = "accord-1"
    retired_keys: dict[str, SecretStr] = Field(default_factory=dict)  # key id -> key, decode only
    codec_server_port: int = 8234
    # Staff present this bearer token (the Temporal UI forwards it) to see decrypted payloads.
    codec_server_token: SecretStr | None = None
    ui_origin: str = "http://localhost:8233"


class OidcSettings(BaseModel):
    """Production sign-in to the desk through the bank's OpenID Connect provider
    (authorization code flow with PKCE). Set ``issuer``, ``client_id`` and ``client_secret``;
    the provider's roles or groups claim maps to Accord roles through ``role_map``."""

    issuer: str | None = None
    """The provider's issuer URL; its ``/.well-known/openid-configuration`` is read."""
    client_id: str | None = None
    client_secret: SecretStr | None = None
    scopes: str = "openid profile"
    staff_id_claim: str = "preferred_username"
    """The ID-token claim that is the staff id (opaque: never a name or an e-mail address)."""
    roles_claim: str = "roles"
    role_map: str = ""
    """Provider role or group = Accord role (agent, team_lead, credit_committee,
    administrator), comma-separated: ``leads=team_lead,risk-committee=credit_committee``.
    The highest role a person has counts; nobody mapped, no access."""

    def roles(self) -> dict[str, str]:
        pairs = (item.split("=", 1) for item in self.role_map.split(",") if "=" in item)
        return {provider.strip(): accord.strip() for provider, accord in pairs}

    @property
    def enabled(self) -> bool:
        return bool(self.issuer)


class StaffSettings(BaseModel):
    """Staff identity: the key that signs staff credentials and the keys that verify them.

    The desk (and an administrator acting by name from the CLI) signs every staff action with
    ``signing_key`` (Ed25519); workers verify with ``verify_keys`` (its public keys), so a
    worker cannot mint credentials. Neither set (development): both come from ``key_file``,
    created on first use."""

    signing_key: SecretStr | None = None
    """Ed25519, base64 (`accord staff new-key`) or PEM."""
    verify_keys: str = ""
    """Public keys a worker accepts (`accord staff public-key`, base64), comma-separated; list
    the old one too while rotating."""

    def verify_key_texts(self) -> list[str]:
        return [key.strip() for key in self.verify_keys.split(",") if key.strip()]

    key_file: Path | None = None
    """Development key pair (default ``<data_dir>/staff/signing-key.pem``)."""
    accounts_file: Path | None = None
    """The desk's local accounts (default ``<data_dir>/staff/accounts.json``): `accord staff
    add` writes it; hashed passwords and roles."""
    credential_seconds: int = Field(default=300, ge=10, le=3600)
    """How long a signed action stays valid (it is bound to one case and one action)."""
    session_hours: float = Field(default=12.0, gt=0, le=24 * 7)
    """How long a desk sign-in or an `accord login` token lasts."""
    token_file: Path | None = None
    """Where `accord login` keeps its token (default ``~/.config/accord/token``)."""


class DeskSettings(BaseModel):
    """The operations desk (`accord desk`): cases, queues and actions for staff."""

    host: str = "127.0.0.1"
    port: int = 8250
    public_url: str | None = None
    """How staff reach it (links in reports, the CLI's `accord login`); default
    ``http://<host>:<port>``."""
    secure_cookies: bool = True
    """``Secure`` session cookies (browsers accept them on http://localhost too)."""
    temporal_ui_url: str | None = None
    """Links to a case in the Temporal UI; default ``http://<temporal host>:<ui_port>``."""
    list_limit: int = Field(default=2000, ge=10, le=100_000)
    """Cases a list reads from visibility before sorting (the store does not sort)."""

    @property
    def url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ACCORD_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    data_dir: Path = Path(".data")
    policy_file: Path | None = None  # None: the bundled default policy
    # Policy per portfolio (a loan's `portfolio`): name -> policy file. A portfolio not listed
    # here uses `<policy_dir>/<name>.toml` when that file exists (simulations register theirs
    # there); no portfolio: `policy_file`.
    portfolios: dict[str, Path] = Field(default_factory=dict)
    policy_dir: Path | None = None  # None: <data_dir>/policies
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    temporal: TemporalSettings = Field(default_factory=TemporalSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    streams: StreamsSettings = Field(default_factory=StreamsSettings)
    encryption: EncryptionSettings = Field(default_factory=EncryptionSettings)
    stack: StackSettings = Field(default_factory=StackSettings)
    core_banking: CoreBankingSettings = Field(default_factory=CoreBankingSettings)
    esign: ESignSettings = Field(default_factory=ESignSettings)
    contact: ContactGatewaySettings = Field(default_factory=ContactGatewaySettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    staff: StaffSettings = Field(default_factory=StaffSettings)
    desk: DeskSettings = Field(default_factory=DeskSettings)
    oidc: OidcSettings = Field(default_factory=OidcSettings)

    @property
    def esign_callback_url(self) -> str:
        if self.esign.callback_url is not None:
            return self.esign.callback_url
        return f"http://{self.webhooks.host}:{self.webhooks.port}/webhooks/esign"

    @property
    def staff_key_file(self) -> Path:
        return self.staff.key_file or self.data_dir / "staff" / "signing-key.pem"

    @property
    def staff_accounts_file(self) -> Path:
        return self.staff.accounts_file or self.data_dir / "staff" / "accounts.json"

    @property
    def temporal_ui_url(self) -> str:
        if self.desk.temporal_ui_url is not None:
            return self.desk.temporal_ui_url.rstrip("/")
        host = self.temporal.address.rsplit(":", 1)[0]
        return f"http://{host}:{self.temporal.ui_port}"

    @property
    def portfolio_policy_dir(self) -> Path:
        return self.policy_dir if self.policy_dir is not None else self.data_dir / "policies"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
