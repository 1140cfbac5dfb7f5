"""Helpers of the streams integration tests: per-test topics, events, the faust worker as a real
process, the case worker in-process, and waiting on conditions with deadlines (never sleeps)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Self

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client.parser import text_string_to_metric_families
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

from activities.case_activities import PublishRequest
from clients import kafka_client_options
from decisions.policy import Policy, load_policy
from schemas.events import (
    CustomerHardship,
    Event,
    LoanOverdue,
    LoanPayment,
    LoanStatus,
    ProductType,
    case_id,
)
from settings import Settings
from stack.apps import StreamProcessor
from stack.environment import child_env
from stack.kafka import KafkaBroker
from stack.ports import pick_free_ports
from streams.app import HEALTH_PATH, METRICS_PATH
from worker import case_workflow_runner
from workflows.case import CaseWorkflow
from workflows.contact_ledger import ContactLedgerWorkflow
from workflows.handle import CaseHandle

REPO_ROOT = Path(__file__).resolve().parents[2]
DELINQUENT_SINCE = date(2026, 10, 1)
QUERY_CONCURRENCY = 16

log = logging.getLogger(__name__)


# --- settings and topics ----------------------------------------------------------------------


def streams_test_settings(base: Settings, tag: str, **streams: Any) -> Settings:
    """``base`` with this test's own topics, consumer group, task queue and processor web port,
    so tests never see each other's events (nor the stack's own processor, which the session
    may be running); short session timeout so a killed processor's partitions move fast."""
    topics = base.kafka.topics
    own_topics = topics.model_copy(
        update={
            name: f"{getattr(topics, name)}.{tag}"
            for name in (
                "overdue",
                "payment",
                "status",
                "hardship",
                "contact_interaction",
                "case_events",
            )
        }
    )
    kafka = base.kafka.model_copy(
        update={"topics": own_topics, "consumer_group": f"accord-streams-{tag}"}
    )
    temporal = base.temporal.model_copy(update={"task_queue": f"accord-cases-{tag}"})
    stream_settings = base.streams.model_copy(
        update={"session_timeout_seconds": 6.0, "retry_max_seconds": 1.0, **streams}
    )
    return with_fresh_web_port(
        base.model_copy(update={"kafka": kafka, "temporal": temporal, "streams": stream_settings})
    )


def with_fresh_web_port(settings: Settings) -> Settings:
    (port,) = pick_free_ports(1, StreamProcessor(settings).web_host)
    return settings.model_copy(
        update={"streams": settings.streams.model_copy(update={"web_port": port})}
    )


def accord(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """The ``accord`` CLI as a user runs it, against ``settings``."""
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=REPO_ROOT,
        env=child_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )


async def create_topics(settings: Settings) -> None:
    await KafkaBroker(settings).bootstrap()


async def uncommitted(settings: Settings, topics: Iterable[str]) -> int:
    """Messages of ``topics`` past the consumer group's committed offsets."""
    admin = AIOKafkaAdminClient(**kafka_client_options(settings.kafka))
    consumer = AIOKafkaConsumer(**kafka_client_options(settings.kafka))
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(settings.kafka.consumer_group)
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in range(settings.kafka.topics.partitions)
        ]
        end = await consumer.end_offsets(partitions)
        return sum(end[tp] - (committed[tp].offset if tp in committed else 0) for tp in partitions)
    finally:
        await consumer.stop()
        await admin.close()


async def read_all(settings: Settings, topic: str) -> list[ConsumerRecord]:
    """Every record of ``topic`` now, from the beginning."""
    # "earliest": a background reset to the end must not win over the seek (cli/dlq.py).
    consumer = AIOKafkaConsumer(
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **kafka_client_options(settings.kafka),
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.kafka.topics.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        records: list[ConsumerRecord] = []
        while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
            for batch in (await consumer.getmany(timeout_ms=1000)).values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


def new_tag() -> str:
    return uuid.uuid4().hex[:8]


# --- events -----------------------------------------------------------------------------------


def overdue_event(
    loan_id: str,
    event_id: str,
    *,
    days_past_due: int = 30,
    delinquent_since: date = DELINQUENT_SINCE,
) -> LoanOverdue:
    return LoanOverdue(
        event_id=event_id,
        occurred_at=datetime(2026, 11, 1, 9, 0, tzinfo=UTC),
        schema_version=1,
        loan_id=loan_id,
        borrower_id=f"b-{loan_id}",
        product=ProductType.PERSONAL_LOAN,
        currency="CNY",
        principal_outstanding=Decimal("10000.00"),
        interest_outstanding=Decimal("120.50"),
        penalty_interest_outstanding=Decimal("10.00"),
        fees_outstanding=Decimal("0.00"),
        overdue_amount=Decimal("900.00"),
        days_past_due=days_past_due,
        delinquent_since=delinquent_since,
        contractual_instalment=Decimal("900.00"),
        remaining_term_months=12,
        annual_interest_rate=Decimal("0.0435"),
    )


def payment_event(loan_id: str, event_id: str) -> LoanPayment:
    paid_at = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
    return LoanPayment(
        event_id=event_id,
        occurred_at=paid_at,
        schema_version=1,
        loan_id=loan_id,
        currency="CNY",
        amount=Decimal("300.00"),
        paid_at=paid_at,
        channel="bank_transfer",
    )


def status_event(loan_id: str, event_id: str, status: str = "cured") -> LoanStatus:
    return LoanStatus(
        event_id=event_id,
        occurred_at=datetime(2026, 11, 2, 11, 0, tzinfo=UTC),
        schema_version=1,
        loan_id=loan_id,
        status=status,
    )


def hardship_event(loan_id: str, event_id: str) -> CustomerHardship:
    return CustomerHardship(
        event_id=event_id,
        occurred_at=datetime(2026, 11, 2, 12, 0, tzinfo=UTC),
        schema_version=1,
        loan_id=loan_id,
        borrower_id=f"b-{loan_id}",
        currency="CNY",
        monthly_income=Decimal("6000.00"),
        essential_expenses=Decimal("3500.00"),
        other_debt_payments=Decimal("500.00"),
        household_size=3,
        reason="income_reduction",
        temporary=True,
        expected_recovery_months=6,
    )


def case_of(loan_id: str) -> str:
    return case_id(loan_id, DELINQUENT_SINCE)


class EventProducer:
    """An idempotent producer, like core banking's: keyed by loan id."""

    def __init__(self, settings: Settings) -> None:
        self._producer = AIOKafkaProducer(
            **kafka_client_options(settings.kafka), enable_idempotence=True, linger_ms=5
        )

    async def __aenter__(self) -> EventProducer:
        await self._producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.stop()

    async def send(self, topic: str, key: str | None, value: bytes) -> None:
        await self._producer.send(topic, value, key=key.encode() if key is not None else None)

    async def send_events(self, topic: str, events: Iterable[Event]) -> None:
        for event in events:
            await self.send(topic, event.loan_id, event.model_dump_json().encode())
        await self._producer.flush()


# --- waiting ----------------------------------------------------------------------------------


# Deadlines are written for a quiet machine; a 2-core CI machine running Kafka, Temporal and the
# processes under test at once can be several times slower. A deadline only delays a failure.
DEADLINE_SLACK = float(os.environ.get("ACCORD_TEST_DEADLINE_SLACK", "3"))


async def wait_until(
    condition: Callable[[], Awaitable[bool]], *, within: float, what: str, poll: float = 0.2
) -> None:
    allowed = within * DEADLINE_SLACK
    deadline = time.monotonic() + allowed
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {allowed:.0f}s waiting for {what}")
        await asyncio.sleep(poll)


# --- the stream processor, a real process ----------------------------------------------------


class AccordProcess:
    """An ``accord`` subcommand as a child process with the given settings."""

    def __init__(
        self, settings: Settings, log_dir: Path, name: str, command: str, *args: str
    ) -> None:
        self.settings = settings
        self.name = name
        self.command = [command, *args]
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cli.main", *self.command],
                env=child_env(self.settings),
                cwd=REPO_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final commit."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


class StreamProcess(AccordProcess):
    """``accord stream``, and what its web server tells."""

    def __init__(self, settings: Settings, log_dir: Path, name: str = "stream") -> None:
        super().__init__(settings, log_dir, name, "stream")

    def _url(self, path: str) -> str:
        return f"http://{StreamProcessor(self.settings).web_host}:{self.settings.streams.web_port}{path}"

    async def _get(self, path: str) -> aiohttp.ClientResponse | None:
        if self.process is None or self.process.poll() is not None:
            raise AssertionError(f"stream processor exited:\n{self.log_tail()}")
        try:
            async with aiohttp.ClientSession() as session, session.get(self._url(path)) as reply:
                await reply.read()
                return reply
        except aiohttp.ClientError:
            return None

    async def health(self) -> dict[str, Any] | None:
        reply = await self._get(HEALTH_PATH)
        if reply is None or reply.status != 200:
            return None
        return await reply.json()

    async def assigned_partitions(self) -> list[str]:
        health = await self.health()
        return [] if health is None or health["rebalancing"] else health["assigned_partitions"]

    async def metrics(self) -> dict[str, float]:
        """Prometheus samples summed over the ``reason`` label, keyed ``name{topic=..,...}``
        (``topic`` and ``outcome`` first, other labels sorted)."""
        reply = await self._get(METRICS_PATH)
        if reply is None or reply.status != 200:
            return {}
        samples: dict[str, float] = {}
        for family in text_string_to_metric_families(await reply.text()):
            for sample in family.samples:
                key = sample_key(sample.name, sample.labels, drop=("reason",))
                samples[key] = samples.get(key, 0.0) + sample.value
        return samples

    async def count(self, topic: str, outcome: str) -> int:
        metrics = await self.metrics()
        return int(
            metrics.get(f'accord_streams_events_total{{topic="{topic}",outcome="{outcome}"}}', 0)
        )


async def wait_processed(
    stream: StreamProcess, topic: str, count: int, *, within: float = 120
) -> None:
    """Until the processor reports ``count`` events of ``topic`` accepted by Temporal."""

    async def reached() -> bool:
        return await stream.count(topic, "processed") >= count

    await wait_until(reached, within=within, what=f"{count} events of {topic} processed")


def sample_key(name: str, labels: Mapping[str, str], drop: Iterable[str] = ()) -> str:
    first = [label for label in ("topic", "outcome") if label in labels]
    rest = sorted(set(labels) - set(first) - set(drop))
    if not first and not rest:
        return name
    return name + "{" + ",".join(f'{label}="{labels[label]}"' for label in first + rest) + "}"


@contextlib.asynccontextmanager
async def stream_processes(
    settings: Settings, log_dir: Path, count: int = 1
) -> AsyncIterator[list[StreamProcess]]:
    processes = [
        StreamProcess(with_fresh_web_port(settings), log_dir, f"stream-{index}")
        for index in range(count)
    ]
    try:
        yield processes
    finally:
        for process in processes:
            process.stop()


@contextlib.asynccontextmanager
async def case_worker(settings: Settings, log_dir: Path) -> AsyncIterator[AccordProcess]:
    """``accord worker``: the case workflow with all its activities, for this test's queue,
    with the core-banking and contact services it calls (on ports of their own)."""
    host = StreamProcessor(settings).web_host
    core_port, contact_port, health_port, metrics_port = pick_free_ports(4, host)
    settings = settings.model_copy(
        update={
            "core_banking": settings.core_banking.model_copy(
                update={"url": f"http://{host}:{core_port}"}
            ),
            "contact": settings.contact.model_copy(update={"url": f"http://{host}:{contact_port}"}),
            "worker": settings.worker.model_copy(
                update={"health_port": health_port, "metrics_port": metrics_port}
            ),
        }
    )
    services = [
        AccordProcess(settings, log_dir, name, "service", "run", name).start()
        for name in ("core-banking", "contact")
    ]
    worker = AccordProcess(settings, log_dir, "worker", "worker").start()
    try:
        yield worker
    finally:
        for process in (worker, *services):
            process.stop()


@activity.defn(name="load_policy")
async def bundled_policy(portfolio: str | None = None) -> Policy:
    return load_policy()


@activity.defn(name="publish_case_events")
async def discarded_case_events(request: PublishRequest) -> None:
    """Case events go nowhere here. A local activity (``workflows.calls._locally``) must be
    registered with the workflow, where an unserved ordinary activity would just wait."""


@contextlib.asynccontextmanager
async def case_workflow_worker(client: Client, settings: Settings) -> AsyncIterator[None]:
    """The real case workflow without its I/O, in this process: each case loads the bundled
    policy, drops its case events and then waits on its first call to the bank's systems, which
    nothing here serves, while signals and queries are served. Ingestion is what these tests
    measure; 1,000 cases each contacting a borrower would only measure this 2-core machine.
    (Refusing the policy instead failed every case at its first step, so a later signal or
    terminate found the case closed.)
    The borrowers' contact ledgers (workflow only) run here too."""
    async with Worker(
        client,
        task_queue=settings.temporal.task_queue,
        workflows=[CaseWorkflow, ContactLedgerWorkflow],
        activities=[bundled_policy, discarded_case_events],
        workflow_runner=case_workflow_runner(),
    ):
        yield


# --- what reached Temporal --------------------------------------------------------------------


# A query the loaded machine could not answer in time is asked again on the next poll.
UNANSWERED_QUERY = frozenset(
    {RPCStatusCode.NOT_FOUND, RPCStatusCode.CANCELLED, RPCStatusCode.DEADLINE_EXCEEDED}
)
QUERY_TIMEOUT = timedelta(seconds=10)


async def applied_event_ids(client: Client, case_id: str) -> set[str] | None:
    """The case's applied event ids; None while it does not exist or cannot answer yet."""
    try:
        handle = CaseHandle(client, case_id)
        return set(await handle.applied_event_ids(rpc_timeout=QUERY_TIMEOUT))
    except RPCError as error:
        if error.status in UNANSWERED_QUERY:
            return None
        raise
    except WorkflowQueryFailedError as error:
        # A query can fail while its case is being replayed (a worker restart, a case the
        # cache dropped): asked again on the next poll; a case that never answers still fails
        # the wait, with this reason in the log.
        log.warning("query of %s failed, asking again: %s", case_id, error)
        return None


async def wait_for_applied(client: Client, expected: dict[str, set[str]], *, within: float) -> None:
    """Until every case has applied exactly the expected event ids (a superset fails at once)."""
    pending = dict(expected)
    limit = asyncio.Semaphore(QUERY_CONCURRENCY)

    async def check(case_id: str) -> None:
        async with limit:
            applied = await applied_event_ids(client, case_id)
        if applied is None:
            return
        extra = applied - expected[case_id]
        assert not extra, f"{case_id} applied unexpected events {sorted(extra)}"
        if applied == expected[case_id]:
            pending.pop(case_id, None)

    async def all_applied() -> bool:
        await asyncio.gather(*(check(case_id) for case_id in list(pending)))
        return not pending

    try:
        await wait_until(all_applied, within=within, what="events applied in their cases")
    except AssertionError as error:
        sample = [
            await _where_stuck(client, case_id, expected[case_id])
            for case_id in sorted(pending)[:3]
        ]
        raise AssertionError(f"{error}: {len(pending)} cases pending, e.g. {sample}") from None


async def _where_stuck(client: Client, case_id: str, expected: set[str]) -> str:
    """A pending case as a failure should show it: what it applied and how its history ends."""
    applied = await applied_event_ids(client, case_id)
    missing = "not answering" if applied is None else f"missing {sorted(expected - applied)}"
    try:
        history = await client.get_workflow_handle(case_id).fetch_history()
    except RPCError as error:
        return f"{case_id}: {missing}; no history ({error.status.name})"
    tail = [
        EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")
        for event in history.events[-8:]
    ]
    return f"{case_id}: {missing}; {len(history.events)} events, last {tail}"


async def count_cases(client: Client, loan_prefix: str) -> int:
    query = f"WorkflowType = 'CaseWorkflow' AND WorkflowId STARTS_WITH 'case-{loan_prefix}'"
    return (await client.count_workflows(query)).count


async def wait_for_case_count(
    client: Client, loan_prefix: str, expected: int, *, within: float = 30
) -> None:
    """Until visibility shows exactly ``expected`` cases for loans starting with the prefix."""

    async def reached() -> bool:
        return await count_cases(client, loan_prefix) == expected

    await wait_until(reached, within=within, what=f"{expected} cases of {loan_prefix}* visible")


def loan_ids(tag: str, count: int) -> list[str]:
    return [f"L{tag}-{index:05d}" for index in range(count)]
