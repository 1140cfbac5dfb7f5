"""A single-node Apache Kafka broker in KRaft mode, run from Maven-resolved jars with local Java."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

from settings import Settings
from stack.component import Component
from stack.errors import StackError, ToolMissingError
from stack.ports import PortClaim, split_host_port

KAFKA_MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL_CLASS = "kafka.tools.StorageTool"
NODE_ID = 1
JVM_FLAGS = [
    # Kafka's own defaults (bin/kafka-run-class.sh).
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
]
ADMIN_REQUEST_TIMEOUT_MS = 5000
COMPLETE_MARKER = ".complete"


# --- tools and jars ---------------------------------------------------------------------------


def find_java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    candidates = [str(Path(java_home) / "bin" / "java")] if java_home else []
    candidates.append(shutil.which("java") or "")
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise ToolMissingError(
        "Java not found: the embedded Kafka broker needs Java 17 or newer. Install a JDK "
        "(Debian/Ubuntu: `apt-get install openjdk-17-jre-headless`, macOS: "
        "`brew install openjdk@17`) or set JAVA_HOME."
    )


def find_maven() -> str:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ToolMissingError(
            "Maven (mvn) not found: it resolves the Kafka broker jars from Maven Central on first "
            "use. Install it (Debian/Ubuntu: `apt-get install maven`, macOS: `brew install "
            "maven`) and run `accord stack fetch`."
        )
    return mvn


def kafka_libs_dir(version: str) -> Path:
    """Per-user cache shared by every data dir and test run (the jars are version-pinned)."""
    cache_home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache_home / "accord" / "kafka-libs" / version


def jars_present(version: str) -> bool:
    return (kafka_libs_dir(version) / COMPLETE_MARKER).exists()


def fetch_kafka_jars(version: str) -> Path:
    """Resolve the broker's runtime jars with Maven into the cache (once); return the folder."""
    libs = kafka_libs_dir(version)
    if jars_present(version):
        return libs
    libs.parent.mkdir(parents=True, exist_ok=True)
    # A lock, so a CLI `stack fetch` and a test session fetching at once do not collide.
    with (libs.parent / f".{version}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if jars_present(version):
            return libs
        mvn = find_maven()
        with tempfile.TemporaryDirectory(dir=libs.parent, prefix=f".{version}-") as work:
            pom = Path(work) / "pom.xml"
            pom.write_bytes(resources.files("stack").joinpath("pom.xml").read_bytes())
            out = Path(work) / "libs"
            result = subprocess.run(
                [
                    mvn, "-q", "-B", "-f", str(pom),
                    "dependency:copy-dependencies",
                    f"-DoutputDirectory={out}",
                    "-DincludeScope=runtime",
                    f"-Dkafka.version={version}",
                ],
                capture_output=True,
                text=True,
                check=False,
            )  # fmt: skip
            if result.returncode != 0 or not any(out.glob("kafka_2.13-*.jar")):
                tail = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
                raise StackError(
                    f"Maven could not resolve org.apache.kafka:kafka_2.13:{version} "
                    f"(exit {result.returncode}). Check access to Maven Central (or your "
                    f"~/.m2/settings.xml mirror) and settings.stack.kafka_version.\n{tail}"
                )
            (out / COMPLETE_MARKER).write_text(version)
            if libs.exists():
                shutil.rmtree(libs)  # an interrupted earlier attempt, without the marker
            out.rename(libs)
    return libs


# --- topics -----------------------------------------------------------------------------------


def topic_partitions(settings: Settings) -> dict[str, int]:
    """Every topic the project uses, with its partition count."""
    topics = settings.kafka.topics
    names = [*topics.inbound(), *(topics.dlq(name) for name in topics.inbound())]
    names.append(topics.case_events)
    return dict.fromkeys(names, topics.partitions)


async def ensure_topics(
    admin: AIOKafkaAdminClient,
    wanted: dict[str, int],
    replication_factor: int = 1,
    configs: dict[str, str] | None = None,
) -> None:
    """Create missing topics (``replication_factor`` copies, topic ``configs``); grow existing
    ones that have fewer partitions than configured."""
    # List before describing: describing a missing topic auto-creates it (with the broker's
    # default partition count) on brokers that allow auto-creation.
    listed = set(await admin.list_topics())
    present = [name for name in wanted if name in listed]
    existing = {
        meta["topic"]: len(meta["partitions"])
        for meta in (await admin.describe_topics(present) if present else [])
        if meta["error_code"] == 0
    }
    missing = [
        NewTopic(
            name,
            num_partitions=count,
            replication_factor=replication_factor,
            topic_configs=configs or {},
        )
        for name, count in wanted.items()
        if name not in existing
    ]
    if missing:
        response = await admin.create_topics(missing, timeout_ms=ADMIN_REQUEST_TIMEOUT_MS)
        for topic, code, *message in response.topic_errors:
            error = for_code(code)
            if code != 0 and error is not TopicAlreadyExistsError:
                raise StackError(f"could not create topic {topic}: {error.__name__} {message}")
    grow = {
        name: NewPartitions(total_count=count)
        for name, count in wanted.items()
        if name in existing and existing[name] < count
    }
    if grow:
        await admin.create_partitions(grow, timeout_ms=ADMIN_REQUEST_TIMEOUT_MS)


# --- the broker -------------------------------------------------------------------------------


def write_once(path: Path, text: str) -> None:
    """Create ``path`` with ``text`` unless it exists; atomic, so brokers formatted at the same
    time agree on one cluster id."""
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}")
    draft.write_text(text)
    try:
        os.link(draft, path)
    except FileExistsError:
        pass
    finally:
        draft.unlink()


def replication_properties(replicas: int, min_insync: int) -> dict[str, str | int]:
    """Broker properties that set how many copies every topic, internal ones included, has."""
    return {
        "offsets.topic.replication.factor": replicas,
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": min_insync,
        "share.coordinator.state.topic.replication.factor": replicas,
        "share.coordinator.state.topic.min.isr": min_insync,
        "default.replication.factor": replicas,
        "min.insync.replicas": min_insync,
    }


def new_cluster_id() -> str:
    """A Kafka cluster id: a UUID in unpadded URL-safe base64, like `kafka-storage random-uuid`."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):  # Kafka rejects ids that look like a CLI flag
            return text


class KafkaBroker(Component):
    name = "kafka"
    startup_timeout = 90.0
    stop_timeout = 30.0

    @property
    def host_port(self) -> tuple[str, int]:
        return split_host_port(self.settings.kafka.bootstrap_servers)

    @property
    def address(self) -> str:
        host, port = self.host_port
        return f"{host}:{port}"

    @property
    def home(self) -> Path:
        return self.data_dir / "kafka"

    @property
    def log_dirs(self) -> Path:
        return self.home / "data"

    @property
    def cluster_id_file(self) -> Path:
        return self.home / "cluster.id"

    @property
    def config_file(self) -> Path:
        return self.home / "server.properties"

    @property
    def node_id(self) -> int:
        return NODE_ID

    @property
    def controller_port(self) -> int:
        return self.settings.stack.kafka_controller_port

    def port_claims(self) -> list[PortClaim]:
        host, port = self.host_port
        return [
            PortClaim(self.name, host, port, "kafka.bootstrap_servers"),
            PortClaim(self.name, host, self.controller_port, "stack.kafka_controller_port"),
        ]

    def quorum_voters(self) -> str:
        """``controller.quorum.voters``: this node alone."""
        return f"{self.node_id}@{self.host_port[0]}:{self.controller_port}"

    def replication_properties(self) -> dict[str, str | int]:
        """One node: every internal topic has a single replica."""
        return replication_properties(replicas=1, min_insync=1)

    def server_properties(self) -> dict[str, str | int]:
        host, port = self.host_port
        controller_port = self.controller_port
        return {
            "process.roles": "broker,controller",
            "node.id": self.node_id,
            "controller.quorum.voters": self.quorum_voters(),
            "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
            "advertised.listeners": f"PLAINTEXT://{host}:{port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.log_dirs),
            **self.replication_properties(),
            # Fewer internal partitions than the 50 default: first group join is much faster.
            "offsets.topic.num.partitions": 10,
            "transaction.state.log.num.partitions": 10,
            "group.initial.rebalance.delay.ms": 0,
            # Topics are created by the stack with explicit partition counts, never implicitly.
            "auto.create.topics.enable": "false",
            "num.partitions": self.settings.kafka.topics.partitions,
            "num.network.threads": 2,
            "num.io.threads": 4,
        }

    def write_config(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        lines = [f"{key}={value}" for key, value in self.server_properties().items()]
        self.config_file.write_text(
            "# Written by the Accord dev stack from settings; edits are overwritten.\n"
            + "\n".join(lines)
            + "\n"
        )
        log4j = resources.files("stack").joinpath("kafka-log4j2.properties").read_bytes()
        (self.home / "log4j2.properties").write_bytes(log4j)

    def classpath(self) -> str:
        return str(kafka_libs_dir(self.settings.stack.kafka_version) / "*")

    def format_storage(self) -> None:
        """Format the log dir once; the cluster id is kept so a re-format keeps the same id."""
        if (self.log_dirs / "meta.properties").exists():
            return
        id_file = self.cluster_id_file
        if not id_file.exists():
            write_once(id_file, new_cluster_id())
        result = subprocess.run(
            [
                find_java(), "-cp", self.classpath(),
                f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
                STORAGE_TOOL_CLASS, "format", "--ignore-formatted",
                "-t", id_file.read_text().strip(), "-c", str(self.config_file),
            ],
            capture_output=True,
            text=True,
            check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise StackError(
                f"formatting Kafka storage in {self.log_dirs} failed "
                f"(exit {result.returncode}):\n{result.stdout}{result.stderr}"
            )

    def prepare(self) -> None:
        find_java()
        fetch_kafka_jars(self.settings.stack.kafka_version)
        self.write_config()
        self.format_storage()

    def command(self) -> list[str]:
        return [
            find_java(),
            *self.settings.stack.kafka_heap.split(),
            *JVM_FLAGS,
            f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
            "-cp", self.classpath(),
            KAFKA_MAIN_CLASS, str(self.config_file),
        ]  # fmt: skip

    def cwd(self) -> Path | None:
        return self.home

    @contextlib.asynccontextmanager
    async def admin(self) -> AsyncIterator[AIOKafkaAdminClient]:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.address, request_timeout_ms=ADMIN_REQUEST_TIMEOUT_MS
        )
        try:
            await admin.start()
            yield admin
        finally:
            await admin.close()

    async def probe(self) -> None:
        host, port = self.host_port
        # A bare TCP connect first: while the broker is still booting this fails quietly,
        # where aiokafka would log a connection error per attempt.
        _, writer = await asyncio.open_connection(host, port)
        writer.close()
        async with asyncio.timeout(ADMIN_REQUEST_TIMEOUT_MS / 1000), self.admin() as admin:
            cluster = await admin.describe_cluster()
        if not cluster.get("brokers"):
            raise StackError("metadata response lists no brokers")

    async def bootstrap(self) -> None:
        async with self.admin() as admin:
            await ensure_topics(admin, topic_partitions(self.settings))
