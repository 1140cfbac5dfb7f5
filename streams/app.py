"""The faust stream processor (``accord stream``): inbound Kafka events into Temporal cases.

State (``streams.state``): two tables, ``open_cases`` and ``held_hardship``, keyed by loan id and
backed by compacted changelog topics (``<consumer group>-<table>-changelog``). They are
co-partitioned with the inbound topics and ``case.events.v1``: every topic has
``kafka.topics.partitions`` partitions and every producer keys by loan id with the default
partitioner, so faust's assignor gives one process a loan's partition on every topic and table
(changelog writes use the same partitioner: ``use_partitioner``). A restart, or a partition
moving to another process, rebuilds the table partition from its changelog before any event is
processed. A case-events agent keeps ``open_cases`` from the cases' own ``opened``/``closed``.

Commit discipline (why no event is lost or skipped):

* One agent per inbound topic, concurrency 1, reading with ``noack_take``: faust acknowledges
  nothing by itself. A batch (up to ``streams.batch_size`` events, all assigned partitions) is
  delivered concurrently across loans and in offset order per loan; only when every event of
  the batch is in Temporal (or held, dead-lettered, or deliberately skipped) are its events
  acknowledged, in offset order. The next batch is taken only after that, so the acknowledged
  offsets of each partition are always contiguous and faust's periodic commit can never move past
  an unfinished event. Table writes are flushed to their changelogs before every commit.
* Transient failures are retried in place (``streams.ingest``): the batch, and so the partitions,
  wait. A crash or SIGKILL before the acknowledgement re-delivers the batch after restart; a
  redelivered overdue event signal-with-starts the same workflow id and the case drops an
  ``event_id`` it has already applied, so every event lands once in effect.
* A rebalance ends every wait (``streams.ordering``): the batch is left unacknowledged (and
  dropped; what faust itself still holds is let go once the flow stops, ``streams.stall``, so
  its wait for in-flight events ends) and read again from the committed offsets after it, so a
  rebalance never waits on Temporal or on another agent. faust's
  ``stream_wait_empty`` stays on: with it off, events buffered when a rebalance started were
  lost to the stream (never acknowledged, the commit stuck below them).
* After each rebalance the stream partitions are sought to their committed offsets while still
  paused, and only then resumed (``streams.recovery``); events a batch still holds from before
  the rebalance are not handled (they are read again from there).
* A partition that aiokafka fetched past what faust handed to the agents, with nothing in
  flight, is sought back to where faust stopped (``streams.stall``).
* A stream partition is committed only through a run of acknowledged offsets that starts at its
  committed offset (``streams.commits``; faust alone commits past some it never handed over),
  and a hole below acknowledged events is read again (``streams.stall``).
* Values are read as raw bytes and validated here, so a bad message can never crash a codec.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from faust.types import TP, AppT, EventT, StreamT
from prometheus_client import generate_latest
from pydantic import BaseModel, ConfigDict, ValidationError
from temporalio.client import Client

from clients import connect_temporal, kafka_client_options
from decisions.policy import load_policy
from settings import KafkaSettings, Settings, get_settings
from streams import dead_letters
from streams.cases import Cases
from streams.ingest import InboundMessage, Ingestor, is_transient, log_unexpected
from streams.metrics import Outcome, StreamMetrics
from streams.ordering import Abandoned, OverdueProgress, Rebalance
from streams.recovery import PositionedTableManager
from streams.stall import StallWatch, release, release_stranded, settle
from streams.state import HELD_HARDSHIP_TABLE, OPEN_CASES_TABLE, LoanBook, partition_of

log = logging.getLogger("accord.streams")

METRICS_PATH = "/accord/metrics"
HEALTH_PATH = "/accord/health"
HELD_SWEEP_SECONDS = 60.0
STALL_CHECK_SECONDS = 10.0
"""A partition is sought back after two checks found it stalled (streams/stall.py)."""
RELEASE_SETTLE_SECONDS = 1.0
"""faust re-checks its in-flight events every second while it revokes (streams/stall.py)."""
EXPOSITION = "text/plain; version=0.0.4"


def faust_broker_options(cfg: KafkaSettings) -> dict[str, Any]:
    """faust's spelling of the Kafka connection settings: broker URLs and credentials."""
    client_options = kafka_client_options(cfg)
    ssl_context = client_options.get("ssl_context")
    credentials: faust.types.auth.CredentialsT | None = None
    if cfg.security_protocol.startswith("SASL"):
        credentials = faust.SASLCredentials(
            username=client_options["sasl_plain_username"],
            password=client_options["sasl_plain_password"],
            mechanism=client_options["sasl_mechanism"],
            ssl_context=ssl_context,
        )
    elif ssl_context is not None:
        credentials = faust.SSLCredentials(ssl_context)
    return {
        "broker": [f"kafka://{server.strip()}" for server in cfg.bootstrap_servers.split(",")],
        "broker_credentials": credentials,
    }


class TemporalConnection:
    """One lazily connected client: the worker starts, and waits, even while Temporal is down."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: Client | None = None
        self._lock = asyncio.Lock()

    async def __call__(self) -> Client:
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    self._client = await connect_temporal(self._settings, lazy=True)
        return self._client


class KafkaOffsets:
    """The overdue topic's end offsets and the group's committed offsets, asked of the brokers
    (not of the consumer's last fetch, which may be older than a record another broker served)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._topic = settings.kafka.topics.overdue
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()

    async def _started(self) -> AIOKafkaConsumer:
        async with self._lock:
            if self._consumer is None:
                consumer = AIOKafkaConsumer(
                    **kafka_client_options(self._settings.kafka), enable_auto_commit=False
                )
                await consumer.start()
                self._consumer = consumer
            return self._consumer

    def _partitions(self, numbers: Iterable[int]) -> list[TopicPartition]:
        return [TopicPartition(self._topic, p) for p in numbers]

    async def end_offsets(self) -> Mapping[int, int]:
        consumer = await self._started()
        every = self._partitions(range(self._settings.kafka.topics.partitions))
        return {tp.partition: offset for tp, offset in (await consumer.end_offsets(every)).items()}

    async def floor(self, partitions: Iterable[int]) -> Mapping[int, int]:
        """Committed offset of each partition, else its earliest: delivered below it."""
        wanted = self._partitions(partitions)
        admin = AIOKafkaAdminClient(**kafka_client_options(self._settings.kafka))
        await admin.start()
        try:
            committed = await admin.list_consumer_group_offsets(
                self._settings.kafka.consumer_group, partitions=wanted
            )
        finally:
            await admin.close()
        earliest = await (await self._started()).beginning_offsets(wanted)
        return {
            tp.partition: max(
                committed[tp].offset if tp in committed and committed[tp].offset >= 0 else 0,
                earliest[tp],
            )
            for tp in wanted
        }

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None


class RebalanceSensor(faust.Sensor):
    """Tells ``Rebalance`` when the consumer group starts and ends a rebalance."""

    def __init__(self, rebalance: Rebalance) -> None:
        super().__init__()
        self._rebalance = rebalance

    def on_rebalance_start(self, app: AppT) -> dict:
        self._rebalance.started()  # called on faust's consumer thread
        return super().on_rebalance_start(app)

    def on_rebalance_end(self, app: AppT, state: dict) -> None:
        self._rebalance.ended()


class CaseLifecycle(BaseModel):
    """What the open-case table needs of a ``case.events.v1`` record."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    kind: str
    case_id: str
    loan_id: str


def create_app(settings: Settings) -> faust.App:
    topics = settings.kafka.topics
    datadir = Path(settings.data_dir) / "streams"
    datadir.mkdir(parents=True, exist_ok=True)  # faust refuses a missing one
    app = faust.App(
        settings.kafka.consumer_group,  # also the consumer group id
        **faust_broker_options(settings.kafka),
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=topics.partitions,
        topic_replication_factor=topics.replication_factor,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.streams.session_timeout_seconds,
        broker_heartbeat_interval=settings.streams.session_timeout_seconds / 10,
        # Tables are in memory, rebuilt from their changelogs: a standby copy would not be kept.
        table_standby_replicas=0,
        web_enabled=True,
        web_port=settings.streams.web_port,
        datadir=str(datadir),
        autodiscover=False,
        TableManager=PositionedTableManager,  # streams.recovery: why
    )
    metrics = StreamMetrics()
    table_options: dict[str, Any] = {
        "key_type": bytes,
        "partitions": topics.partitions,
        "use_partitioner": True,  # written from batches and timers: partition by the loan key
    }
    open_cases = app.Table(OPEN_CASES_TABLE, **table_options)
    held_hardship = app.Table(HELD_HARDSHIP_TABLE, **table_options)
    book = LoanBook(open_cases, held_hardship)
    policy = load_policy(settings.policy_file)

    rebalance = Rebalance()
    app.sensors.add(RebalanceSensor(rebalance))
    offsets = KafkaOffsets(settings)

    async def end_offsets() -> Mapping[int, int]:
        metrics.ordering_probe()
        return await offsets.end_offsets()

    overdue_progress = OverdueProgress(end_offsets, offsets.floor, rebalance)

    dead_letter_topics = {
        topic: app.topic(
            topics.dlq(topic), partitions=topics.partitions, key_type=bytes, value_type=bytes
        )
        for topic in topics.inbound()
    }
    declared: set[str] = set()

    async def send(topic: faust.TopicT, letter: dead_letters.DeadLetter) -> None:
        if topic.get_topic_name() not in declared:
            await topic.maybe_declare()
            declared.add(topic.get_topic_name())
        # Keyed like the original (same partitioner), so a loan's dead letters stay in order.
        await app.producer.send_and_wait(
            topic.get_topic_name(), letter.key, letter.value, None, None, letter.headers
        )

    async def dead_letter(message: InboundMessage, rejection: dead_letters.Rejection) -> None:
        letter = dead_letters.dead_letter(
            rejection,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            key=message.key,
            value=message.value,
            original_headers=message.headers,
            max_bytes=app.conf.producer_max_request_size,
        )
        topic = dead_letter_topics[message.topic]
        if letter.truncated:
            metrics.dead_letter_truncated(message.topic)
        try:
            await send(topic, letter)
        except Exception as error:
            if is_transient(error):
                raise
            # Refused for good (e.g. over the dead-letter topic's own max.message.bytes): the
            # reason and where the original is, without the value.
            log.warning(
                "dead letter refused, written without its value topic=%s offset=%d error=%s",
                message.topic,
                message.offset,
                type(error.__cause__ or error).__name__,
            )
            await send(topic, dead_letters.without_value(letter))

    ingestor = Ingestor(
        settings,
        Cases(settings, TemporalConnection(settings), metrics),
        book,
        overdue_progress,
        rebalance,
        dead_letter,
        metrics,
        policy.durations.hardship_hold,
    )

    for name in topics.inbound():
        _add_ingest_agent(
            app,
            app.topic(name, partitions=topics.partitions, key_type=bytes, value_type=bytes),
            ingestor,
            metrics,
            overdue_progress if name == topics.overdue else None,
            settings,
        )

    case_events = app.topic(
        topics.case_events, partitions=topics.partitions, key_type=bytes, value_type=bytes
    )

    @app.agent(case_events, name="accord.case_events")
    async def keep_open_cases(stream: StreamT) -> None:
        async for event in stream.events():
            try:
                _apply_case_event(book, metrics, event.message.value)
            except Exception as error:  # never escapes: the table is self-correcting
                log_unexpected(error, "case event not applied")
                metrics.case_event("failed")

    def owned_by_us(key: bytes) -> bool:
        partition = partition_of(key, topics.partitions)
        return TP(topics.hardship, partition) in app.consumer.assignment()

    @app.timer(interval=HELD_SWEEP_SECONDS)
    async def drop_expired_hardship() -> None:
        if app.rebalancing:
            return
        try:
            for key in list(book.expired_held(datetime.now(UTC), owned_by_us)):
                book.drop_held(key)
                metrics.held_hardship("expired")
        except Exception as error:
            log_unexpected(error, "held hardship sweep failed")

    @app.on_partitions_assigned.connect
    async def forget_unassigned(sender: Any, assigned: set[TP], **kwargs: Any) -> None:
        """Drop from memory (not from the changelog) the keys of partitions this process no
        longer has: whoever has them now keeps them, and a partition that comes back is read
        from its changelog again. Not on revocation: a rebalance revokes every partition, and
        faust does not re-read the changelog of a partition it gets back at once."""
        numbers = {tp.partition for tp in assigned if tp.topic in topics.inbound()}
        for table in (open_cases, held_hardship):
            store = table.data
            for key in list(store.keys()):
                if partition_of(key, topics.partitions) not in numbers:
                    store.pop(key, None)

    @app.task
    async def on_start() -> None:
        rebalance.bind(asyncio.get_running_loop())
        await _check_copartitioned(settings, [open_cases, held_hardship], app)

    @app.service
    class CloseOffsets(faust.Service):  # type: ignore[misc]
        async def on_stop(self) -> None:
            await offsets.stop()

    inbound = set(topics.inbound())
    stall_watch = StallWatch(
        consumer=lambda: app.consumer,
        partitions=lambda: [tp for tp in app.consumer.assignment() if tp.topic in inbound],
        generation=lambda: app.consumer_generation_id,
    )

    releasing: set[asyncio.Task[int]] = set()

    def release_stranded_events() -> None:
        # In the background: it watches the revocation that the rebalance now starts.
        task = asyncio.ensure_future(
            release_stranded(app.consumer, lambda: rebalance.active, RELEASE_SETTLE_SECONDS)
        )
        releasing.add(task)
        task.add_done_callback(releasing.discard)

    rebalance.when_started(release_stranded_events)

    @app.timer(interval=STALL_CHECK_SECONDS)
    async def seek_stalled_partitions() -> None:
        if app.rebalancing:
            stall_watch.forget()
            return
        try:
            sought = await asyncio.wait_for(stall_watch.check(), timeout=STALL_CHECK_SECONDS)
        except Exception as error:  # never escapes: the next check tries again
            log_unexpected(error, "stalled-partition check failed")
            return
        for tp in sought:
            metrics.sought_back(tp.topic)

    def highwaters() -> dict[tuple[str, int], int]:
        consumer = app.consumer
        return {
            (tp.topic, tp.partition): consumer.highwater(tp)
            for tp in consumer.assignment()
            if tp.topic in inbound
        }

    metrics.watch(highwaters, book.open_case_count, book.held_count)

    @app.page(METRICS_PATH)
    async def accord_metrics(view: faust.web.View, request: faust.web.Request) -> Any:
        # The classic text format (0.0.4), which every Prometheus version scrapes.
        return view.text(generate_latest(metrics.registry).decode(), content_type=EXPOSITION)

    @app.page(HEALTH_PATH)
    async def accord_health(view: faust.web.View, request: faust.web.Request) -> Any:
        assigned = sorted(
            f"{tp.topic}:{tp.partition}" for tp in app.consumer.assignment() if tp.topic in inbound
        )
        return view.json(
            {
                "status": "ok",
                "rebalancing": app.rebalancing,
                "assigned_partitions": assigned,
                "open_cases": book.open_case_count(),
                "held_hardship": book.held_count(),
            }
        )

    return app


def _apply_case_event(book: LoanBook, metrics: StreamMetrics, value: bytes | None) -> None:
    try:
        event = CaseLifecycle.model_validate_json(value or b"")
    except ValidationError:
        metrics.case_event("invalid")
        log.warning("case event without kind, case_id or loan_id ignored")
        return
    if event.kind == "opened":
        book.case_opened(event.loan_id, event.case_id)
        metrics.case_event("opened")
    elif event.kind == "closed":
        metrics.case_event("closed" if book.case_closed(event.loan_id, event.case_id) else "stale")
    else:
        metrics.case_event("other")


async def _check_copartitioned(settings: Settings, tables: Sequence[Any], app: faust.App) -> None:
    """Refuse to run on topics whose partition counts differ: a loan's events and state would sit
    in different partitions, and the table would answer "no case" for loans it does have."""
    topics = settings.kafka.topics
    changelogs = [table.changelog_topic.get_topic_name() for table in tables]
    names = [*topics.inbound(), topics.case_events, *changelogs]
    admin = AIOKafkaAdminClient(**kafka_client_options(settings.kafka))
    try:
        await admin.start()
        present = set(await admin.list_topics())
        described = await admin.describe_topics([n for n in names if n in present])
    except Exception as error:
        log.warning("partition counts not checked: %s", type(error).__name__)
        return
    finally:
        await admin.close()
    wrong = {
        meta["topic"]: len(meta["partitions"])
        for meta in described
        if meta["error_code"] == 0 and len(meta["partitions"]) != topics.partitions
    }
    if wrong:
        message = (
            f"topics must all have kafka.topics.partitions={topics.partitions} partitions to be "
            f"co-partitioned by loan id; these differ: {wrong}"
        )
        log.error(message)
        await app.crash(RuntimeError(message))


def _add_ingest_agent(
    app: faust.App,
    topic: faust.TopicT,
    ingestor: Ingestor,
    metrics: StreamMetrics,
    overdue_progress: OverdueProgress | None,
    settings: Settings,
) -> None:
    name = topic.get_topic_name()

    async def ingest(stream: StreamT) -> None:
        async for events in stream.noack_take(
            settings.streams.batch_size, within=settings.streams.batch_linger_seconds
        ):
            read_at = time.monotonic()
            # noack_take buffers the events themselves. An event fetched before the latest
            # rebalance (one faust had already handed to the buffer) is let go unacknowledged:
            # the partition was sought back to its committed offset and reads it again, in order.
            generation = app.consumer_generation_id
            batch: list[EventT] = [e for e in events if e.message.generation_id == generation]
            stale = [e.message for e in events if e.message.generation_id != generation]
            release(app.consumer, stale)
            del events, stale
            if not batch:
                continue
            try:
                outcomes = await ingestor.handle_batch([_inbound(e) for e in batch], read_at)
            except Abandoned:
                # Not acknowledged: read again from the committed offsets after the rebalance.
                release(app.consumer, [e.message for e in batch])
                metrics.batch_abandoned()
                log.info("batch abandoned for a rebalance topic=%s size=%d", name, len(batch))
                del batch
                continue
            except Exception as error:
                # Never reached by design (handle never raises). If it were, acking would lose
                # the batch and carrying on would leave a gap no commit can pass: stop instead,
                # and the restart re-delivers from the last commit.
                log_unexpected(error, f"batch failed, stopping topic={name}")
                await app.crash(error)
                return
            delivered: dict[int, int] = {}
            for event in batch:
                await stream.ack(event)
                message = event.message
                metrics.processed_position[(message.topic, message.partition)] = message.offset + 1
                delivered[message.partition] = message.offset + 1
            settle(app.consumer, [event.message for event in batch])
            if overdue_progress is not None:
                for partition, next_offset in delivered.items():
                    await overdue_progress.delivered(partition, next_offset)
            metrics.batch_done(name, time.monotonic() - read_at)
            log.debug(
                "batch delivered topic=%s size=%d processed=%d skipped=%d held=%d "
                "dead_lettered=%d elapsed_ms=%d",
                name,
                len(batch),
                outcomes.count(Outcome.PROCESSED),
                outcomes.count(Outcome.SKIPPED),
                outcomes.count(Outcome.HELD),
                outcomes.count(Outcome.DEAD_LETTERED),
                (time.monotonic() - read_at) * 1000,
            )

    app.agent(topic, name=f"accord.ingest.{name}", concurrency=1)(ingest)


def _inbound(event: EventT) -> InboundMessage:
    message = event.message
    return InboundMessage(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
        headers=list(message.headers or ()),
    )


def main() -> None:
    settings = get_settings()
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=settings.log_level)
    # At WARNING and above faust's terminal spinner would lower the root logger to DEBUG (it
    # spins on every record): every debug call would build a record. A log file needs no spinner.
    worker.spinner = None
    worker.execute_from_commandline()
