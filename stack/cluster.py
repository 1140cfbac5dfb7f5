"""The cluster topology: the production shape on one machine, no Docker, all on loopback.

- ``postgresql``: Debian's PostgreSQL (``stack.postgres``), the Temporal server's store.
- ``kafka-1`` .. ``kafka-3``: KRaft nodes (broker and controller each); every Accord topic with
  ``replication_factor`` copies and ``min.insync.replicas`` set.
- ``temporal``: the Temporal server built from ``go.temporal.io/server`` (``stack.builds``),
  configured by the server's own embedded config template through the environment variables
  the official ``temporalio/server`` image reads, so docker-compose.yml sets the same ones: SQL
  persistence and visibility on PostgreSQL, ``history_shards`` shards. Its schema is set up with
  the ``temporal-sql-tool`` of the same build; the namespace and search attributes are
  registered once it serves.
- ``temporal-ui``: the UI server built from ``github.com/temporalio/ui-server/v2``.
- ``worker-N`` and ``stream-N``: the production entry points, each with its own data dir
  (``<data_dir>/<name>``) and, for stream processors, its own web port.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from importlib import resources
from pathlib import Path

import httpx
import yaml
from aiokafka.errors import KafkaError
from google.protobuf.duration_pb2 import Duration
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest, RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from settings import ClusterSettings, Settings
from stack.apps import HTTP_TIMEOUT_SECONDS, StreamProcessor, TemporalWorker
from stack.builds import ensure_built, temporal_server_build, temporal_ui_build
from stack.component import Component
from stack.errors import StackError
from stack.kafka import KafkaBroker, ensure_topics, replication_properties, topic_partitions
from stack.ports import PortClaim, split_host_port
from stack.postgres import PostgresServer
from stack.services import (
    ContactService,
    CoreBankingService,
    DeskService,
    ESignService,
    WebhookReceiver,
)
from stack.temporal import (
    CLOSED_WORKFLOW_RETENTION,
    RPC_TIMEOUT,
    connect,
    ensure_retention,
    ensure_search_attributes,
)

# The server's SQL plugin for PostgreSQL >= 12, and the embedded schemas of temporal-sql-tool:
# database name -> schema name.
SQL_PLUGIN = "postgres12"
TEMPORAL_DATABASE = "temporal"
VISIBILITY_DATABASE = "temporal_visibility"
SCHEMAS = {
    TEMPORAL_DATABASE: "postgresql/v12/temporal",
    VISIBILITY_DATABASE: "postgresql/v12/visibility",
}
DYNAMIC_CONFIG = "temporal-dynamic-config.yaml"
NAMESPACE_READY_TIMEOUT = 60.0


# --- Kafka -----------------------------------------------------------------------------------


class ClusterKafkaBroker(KafkaBroker):
    """Node ``node`` (1-based) of the KRaft quorum: broker and controller at once."""

    startup_timeout = 120.0

    def __init__(self, settings: Settings, node: int) -> None:
        super().__init__(settings)
        self.node = node
        self.name = f"kafka-{node}"

    @property
    def cluster(self) -> ClusterSettings:
        return self.settings.stack.cluster

    @property
    def node_id(self) -> int:
        return self.node

    @property
    def host_port(self) -> tuple[str, int]:
        return split_host_port(self.cluster.kafka_brokers[self.node - 1])

    @property
    def controller_port(self) -> int:
        return self.cluster.kafka_controller_ports[self.node - 1]

    @property
    def home(self) -> Path:
        return self.data_dir / self.name

    @property
    def cluster_id_file(self) -> Path:
        return self.data_dir / "kafka-cluster.id"

    def port_claims(self) -> list[PortClaim]:
        host, port = self.host_port
        return [
            PortClaim(self.name, host, port, "stack.cluster.kafka_brokers"),
            PortClaim(
                self.name, host, self.controller_port, "stack.cluster.kafka_controller_ports"
            ),
        ]

    def quorum_voters(self) -> str:
        return ",".join(
            f"{node}@{split_host_port(address)[0]}:{port}"
            for node, (address, port) in enumerate(
                zip(self.cluster.kafka_brokers, self.cluster.kafka_controller_ports, strict=True),
                start=1,
            )
        )

    def replication_properties(self) -> dict[str, str | int]:
        return replication_properties(
            replicas=self.cluster.replication_factor, min_insync=self.cluster.min_insync_replicas
        )

    async def bootstrap(self) -> None:
        """Once every broker has registered: the topics, replicated (idempotent, so the three
        nodes may all do it)."""
        expected = len(self.cluster.kafka_brokers)
        deadline = time.monotonic() + self.startup_timeout
        async with self.admin() as admin:
            while True:
                try:
                    brokers = (await admin.describe_cluster()).get("brokers") or []
                except KafkaError as error:
                    # A broker already in the metadata may not accept connections yet (seen in
                    # CI: NodeNotReadyError for node 3): not registered yet, asked again.
                    if not error.retriable:
                        raise
                    brokers = []
                if len(brokers) >= expected:
                    break
                if time.monotonic() > deadline:
                    raise StackError(f"only {len(brokers)} of {expected} brokers registered")
                await asyncio.sleep(0.5)
            await ensure_topics(
                admin,
                topic_partitions(self.settings),
                replication_factor=self.cluster.replication_factor,
                configs={"min.insync.replicas": str(self.cluster.min_insync_replicas)},
            )


# --- Temporal --------------------------------------------------------------------------------


def dynamic_config_file() -> Path:
    """Shared with docker-compose.yml, which mounts it where the server image looks."""
    return Path(str(resources.files("stack").joinpath(DYNAMIC_CONFIG)))


def server_environment(settings: Settings) -> dict[str, str]:
    """The variables the server's embedded config template reads (as the image does): the
    store, the shards, and where each service listens. docker-compose.yml sets the same keys."""
    cluster = settings.stack.cluster
    host, frontend_port = split_host_port(settings.temporal.address)
    ports = cluster.temporal_ports
    return {
        "DB": SQL_PLUGIN,
        "DBNAME": TEMPORAL_DATABASE,
        "VISIBILITY_DBNAME": VISIBILITY_DATABASE,
        "POSTGRES_SEEDS": host,
        "DB_PORT": str(cluster.postgres_port),
        "POSTGRES_USER": cluster.postgres_user,
        "POSTGRES_PWD": cluster.postgres_password.get_secret_value(),
        "NUM_HISTORY_SHARDS": str(cluster.history_shards),
        "BIND_ON_IP": host,
        "TEMPORAL_BROADCAST_ADDRESS": host,
        "FRONTEND_GRPC_PORT": str(frontend_port),
        "FRONTEND_HTTP_PORT": str(ports.frontend_http),
        "FRONTEND_MEMBERSHIP_PORT": str(ports.frontend_membership),
        "HISTORY_GRPC_PORT": str(ports.history_grpc),
        "HISTORY_MEMBERSHIP_PORT": str(ports.history_membership),
        "MATCHING_GRPC_PORT": str(ports.matching_grpc),
        "MATCHING_MEMBERSHIP_PORT": str(ports.matching_membership),
        "WORKER_GRPC_PORT": str(ports.worker_grpc),
        "WORKER_MEMBERSHIP_PORT": str(ports.worker_membership),
        "DYNAMIC_CONFIG_FILE_PATH": str(dynamic_config_file()),
        "LOG_LEVEL": "warn",
    }


def sql_tool_commands(settings: Settings, tool: str) -> list[list[str]]:
    """temporal-sql-tool runs that create both databases and bring their schemas up to the
    build's version (each is idempotent but ``create-database``, whose "exists" is ignored)."""
    cluster = settings.stack.cluster
    host = split_host_port(settings.temporal.address)[0]
    # The password travels as SQL_PASSWORD (sql_tool_environment), not in the argv `ps` shows.
    connection = [
        tool, "--plugin", SQL_PLUGIN, "--ep", host, "--port", str(cluster.postgres_port),
        "--user", cluster.postgres_user,
    ]  # fmt: skip
    commands = []
    for database, schema in SCHEMAS.items():
        with_db = [*connection, "--db", database]
        commands += [
            [*with_db, "create-database"],
            [*with_db, "setup-schema", "-v", "0.0"],
            [*with_db, "update-schema", "--schema-name", schema],
        ]
    return commands


def sql_tool_environment(settings: Settings) -> dict[str, str]:
    password = settings.stack.cluster.postgres_password.get_secret_value()
    return {**os.environ, "SQL_PASSWORD": password}


class TemporalServer(Component):
    """All four Temporal services in one process on PostgreSQL."""

    name = "temporal"
    phase = 1  # after PostgreSQL
    startup_timeout = 120.0

    @property
    def host_port(self) -> tuple[str, int]:
        return split_host_port(self.settings.temporal.address)

    @property
    def address(self) -> str:
        host, port = self.host_port
        shards = self.settings.stack.cluster.history_shards
        return f"{host}:{port} ({shards} history shards, PostgreSQL)"

    def port_claims(self) -> list[PortClaim]:
        host, port = self.host_port
        claims = [PortClaim(self.name, host, port, "temporal.address")]
        for field, value in self.settings.stack.cluster.temporal_ports:
            claims.append(
                PortClaim(self.name, host, value, f"stack.cluster.temporal_ports.{field}")
            )
        return claims

    @property
    def build_folder(self) -> Path:
        return temporal_server_build(self.settings.stack.cluster).folder

    def prepare(self) -> None:
        ensure_built(temporal_server_build(self.settings.stack.cluster))
        self.setup_schema()

    def setup_schema(self) -> None:
        tool = str(self.build_folder / "temporal-sql-tool")
        for argv in sql_tool_commands(self.settings, tool):
            result = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                env=sql_tool_environment(self.settings),
                check=False,
            )
            output = result.stdout + result.stderr
            if result.returncode != 0 and not (
                "create-database" in argv and "already exists" in output
            ):
                step = " ".join(argv[argv.index("--db") :])
                raise StackError(
                    f"temporal-sql-tool {step} failed (exit {result.returncode}):\n{output[-3000:]}"
                )

    def command(self) -> list[str]:
        return [str(self.build_folder / "temporal-server"), "--allow-no-auth", "start"]

    def env(self) -> dict[str, str]:
        return {**super().env(), **server_environment(self.settings)}

    def cwd(self) -> Path | None:
        folder = self.data_dir / "temporal"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    async def probe(self) -> None:
        host, port = self.host_port
        client = await Client.connect(f"{host}:{port}", namespace="temporal-system")
        await client.workflow_service.get_system_info(GetSystemInfoRequest(), timeout=RPC_TIMEOUT)

    async def bootstrap(self) -> None:
        """The namespace, its retention and the case search attributes; then wait until the
        frontend's caches know them (a worker started earlier would be told the namespace does
        not exist)."""
        host, port = self.host_port
        namespace = self.settings.temporal.namespace
        client = await connect(f"{host}:{port}", namespace)
        await register_namespace(client, namespace)
        await ensure_search_attributes(client, namespace)
        await ensure_retention(client, namespace, CLOSED_WORKFLOW_RETENTION)
        deadline = time.monotonic() + NAMESPACE_READY_TIMEOUT
        while True:
            try:
                # Goes through the namespace and search attribute caches, like a start would.
                await client.count_workflows("CaseStage = 'collect_info'", rpc_timeout=RPC_TIMEOUT)
                return
            except RPCError as error:
                if time.monotonic() > deadline:
                    raise StackError(
                        f"namespace {namespace} not usable after registering: {error}"
                    ) from error
            await asyncio.sleep(0.5)


async def register_namespace(client: Client, namespace: str) -> None:
    retention = Duration()
    retention.FromTimedelta(CLOSED_WORKFLOW_RETENTION)
    try:
        await client.workflow_service.register_namespace(
            RegisterNamespaceRequest(
                namespace=namespace, workflow_execution_retention_period=retention
            ),
            timeout=RPC_TIMEOUT,
        )
    except RPCError as error:
        if error.status is not RPCStatusCode.ALREADY_EXISTS:
            raise


class TemporalUI(Component):
    """The Temporal web UI (ui-server), on ``temporal.ui_port``."""

    name = "temporal-ui"
    phase = 2  # after the Temporal server it talks to
    startup_timeout = 60.0

    @property
    def host(self) -> str:
        return split_host_port(self.settings.temporal.address)[0]

    @property
    def address(self) -> str:
        return f"http://{self.host}:{self.settings.temporal.ui_port}/"

    @property
    def home(self) -> Path:
        return self.data_dir / "temporal-ui"

    def port_claims(self) -> list[PortClaim]:
        return [PortClaim(self.name, self.host, self.settings.temporal.ui_port, "temporal.ui_port")]

    def ui_config(self) -> dict[str, object]:
        return {
            "temporalGrpcAddress": self.settings.temporal.address,
            "host": self.host,
            "port": self.settings.temporal.ui_port,
            "enableUi": True,
            "defaultNamespace": self.settings.temporal.namespace,
            "disableNewsFetch": True,  # no internet here
            "cors": {"allowOrigins": [f"http://{self.host}:{self.settings.temporal.ui_port}"]},
        }

    def prepare(self) -> None:
        ensure_built(temporal_ui_build(self.settings.stack.cluster))
        config = self.home / "config"
        config.mkdir(parents=True, exist_ok=True)
        (config / "accord.yaml").write_text(
            "# Written by the Accord stack from settings; edits are overwritten.\n"
            + yaml.safe_dump(self.ui_config(), sort_keys=False)
        )

    def command(self) -> list[str]:
        binary = temporal_ui_build(self.settings.stack.cluster).binary("temporal-ui-server")
        return [str(binary), "--root", str(self.home), "--config", "config", "--env", "accord",
                "start"]  # fmt: skip

    async def probe(self) -> None:
        url = f"http://{self.host}:{self.settings.temporal.ui_port}/healthz"
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_SECONDS) as client:
            answer = await client.get(url)
        if answer.status_code != 200:
            raise StackError(f"UI answered HTTP {answer.status_code} on /healthz")


# --- the apps --------------------------------------------------------------------------------


def app_settings(settings: Settings) -> Settings:
    """What the cluster's apps (and its clients) read: every broker to bootstrap from, and the
    topics' replication factor for the topics faust creates itself."""
    cluster = settings.stack.cluster
    kafka = settings.kafka.model_copy(
        update={
            "bootstrap_servers": ",".join(cluster.kafka_brokers),
            "topics": settings.kafka.topics.model_copy(
                update={"replication_factor": cluster.replication_factor}
            ),
        }
    )
    return settings.model_copy(update={"kafka": kafka})


def instance_settings(settings: Settings, name: str, **updates: object) -> Settings:
    """One app instance's settings: its own data dir under the stack's."""
    return app_settings(settings).model_copy(
        update={"data_dir": settings.data_dir.resolve() / name, **updates}
    )


class ClusterWorker(TemporalWorker):
    phase = 2  # after the Temporal server (phase 1), which needs PostgreSQL first

    def __init__(self, settings: Settings, number: int) -> None:
        self.name = f"worker-{number}"
        cluster = settings.stack.cluster
        own = instance_settings(settings, self.name)
        worker = own.worker.model_copy(
            update={
                "listen_host": split_host_port(settings.temporal.address)[0],
                "health_port": cluster.worker_health_ports[number - 1],
                "metrics_port": cluster.worker_metrics_ports[number - 1],
            }
        )
        super().__init__(own.model_copy(update={"worker": worker}))

    def port_claims(self) -> list[PortClaim]:
        worker = self.settings.worker
        return [
            PortClaim(
                self.name, worker.listen_host, worker.health_port,
                "stack.cluster.worker_health_ports",
            ),
            PortClaim(
                self.name, worker.listen_host, worker.metrics_port,
                "stack.cluster.worker_metrics_ports",
            ),
        ]  # fmt: skip


class ClusterStreamProcessor(StreamProcessor):
    phase = 2

    def __init__(self, settings: Settings, number: int) -> None:
        self.name = f"stream-{number}"
        own = instance_settings(settings, self.name)
        port = settings.stack.cluster.stream_web_ports[number - 1]
        super().__init__(
            own.model_copy(update={"streams": own.streams.model_copy(update={"web_port": port})})
        )

    def port_claims(self) -> list[PortClaim]:
        return [
            PortClaim(
                self.name, self.web_host, self.settings.streams.web_port,
                "stack.cluster.stream_web_ports",
            )
        ]  # fmt: skip


def cluster_components(settings: Settings) -> list[Component]:
    cluster = settings.stack.cluster
    for field, count in (
        ("stream_web_ports", cluster.stream_processors),
        ("worker_health_ports", cluster.workers),
        ("worker_metrics_ports", cluster.workers),
    ):
        listed = len(getattr(cluster, field))
        if listed < count:
            raise StackError(f"stack.cluster.{field} lists {listed} ports for {count}: one each")
    if len(cluster.kafka_controller_ports) != len(cluster.kafka_brokers):
        raise StackError("stack.cluster.kafka_controller_ports needs one port per broker")
    return [
        PostgresServer(settings),
        *(ClusterKafkaBroker(settings, node) for node in range(1, len(cluster.kafka_brokers) + 1)),
        TemporalServer(settings),
        TemporalUI(settings),
        # The bank's systems the workers reach over HTTP: the embedded stand-ins, as on dev.
        *(
            service(app_settings(settings))
            for service in (CoreBankingService, ESignService, ContactService, WebhookReceiver)
        ),
        *(ClusterWorker(settings, n) for n in range(1, cluster.workers + 1)),
        *(ClusterStreamProcessor(settings, n) for n in range(1, cluster.stream_processors + 1)),
        DeskService(app_settings(settings)),
    ]
