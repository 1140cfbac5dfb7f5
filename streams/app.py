"""The faust stream processor (``accord stream``): inbound Kafka events into Temporal cases.

Commit discipline (why no event is lost or skipped):

* One agent per inbound topic, concurrency 1, reading with ``noack_take``: faust acknowledges
  nothing by itself. A batch (up to ``streams.batch_size`` events, all assigned partitions) is
  delivered to Temporal concurrently across loans and in offset order per loan; only when every
  event of the batch is in Temporal (or dead-lettered, or deliberately skipped) are its events
  acknowledged, in offset order. The next batch is taken only after that, so the acknowledged
  offsets of each partition are always contiguous and faust's periodic commit can never move past
  an unfinished event. (With ``concurrency > 1`` or plain ``take`` — which acks in a ``finally``,
  even when cancelled mid-batch — it could.)
* Transient failures are retried in place (``streams.ingest``): the batch, and so the partitions,
  wait. A crash or SIGKILL before the acknowledgement re-delivers the batch after restart; a
  redelivered overdue event signal-with-starts the same workflow id and the case drops an
  ``event_id`` it has already applied, so every event lands once in effect. (A redelivery this
  process already delivered is skipped before Temporal: ``ingest.DeliveredEvents``.)
* Values are read as raw bytes and validated here, so a bad message can never crash a codec.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faust
from faust.types import EventT, StreamT
from temporalio.client import Client

from clients import connect_temporal, kafka_client_options
from settings import KafkaSettings, Settings, get_settings
from streams.dead_letters import Rejection, dead_letter_headers
from streams.ingest import InboundMessage, Ingestor, log_unexpected
from streams.metrics import Outcome, StreamMetrics

log = logging.getLogger("accord.streams")

METRICS_PATH = "/accord/metrics"
HEALTH_PATH = "/accord/health"


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
        web_enabled=True,
        web_port=settings.streams.web_port,
        datadir=str(datadir),
        autodiscover=False,
    )
    metrics = StreamMetrics()
    inbound = set(topics.inbound())
    dead_letter_topics = {
        topic: app.topic(
            topics.dlq(topic), partitions=topics.partitions, key_type=bytes, value_type=bytes
        )
        for topic in topics.inbound()
    }
    declared: set[str] = set()

    async def dead_letter(message: InboundMessage, rejection: Rejection) -> None:
        dlq = dead_letter_topics[message.topic]
        if dlq.get_topic_name() not in declared:
            await dlq.maybe_declare()
            declared.add(dlq.get_topic_name())
        headers = dead_letter_headers(
            rejection,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            original_headers=message.headers,
        )
        # Keyed like the original (same partitioner), so a loan's dead letters stay in order.
        await app.producer.send_and_wait(
            dlq.get_topic_name(), message.key, message.value, None, None, headers
        )

    ingestor = Ingestor(settings, TemporalConnection(settings), dead_letter, metrics)

    @app.on_partitions_revoked.connect
    async def forget_open_cases(sender: Any, revoked: Any, **kwargs: Any) -> None:
        ingestor.forget_open_cases()

    for name in topics.inbound():
        _add_ingest_agent(
            app,
            app.topic(name, partitions=topics.partitions, key_type=bytes, value_type=bytes),
            ingestor,
            metrics,
            settings.streams.batch_size,
            settings.streams.batch_linger_seconds,
        )

    @app.page(METRICS_PATH)
    async def accord_metrics(view: faust.web.View, request: faust.web.Request) -> Any:
        consumer = app.consumer
        highwaters = {
            (tp.topic, tp.partition): consumer.highwater(tp)
            for tp in consumer.assignment()
            if tp.topic in inbound
        }
        return view.text(metrics.render(highwaters), content_type="text/plain; version=0.0.4")

    @app.page(HEALTH_PATH)
    async def accord_health(view: faust.web.View, request: faust.web.Request) -> Any:
        assigned = sorted(
            f"{tp.topic}:{tp.partition}" for tp in app.consumer.assignment() if tp.topic in inbound
        )
        return view.json(
            {"status": "ok", "rebalancing": app.rebalancing, "assigned_partitions": assigned}
        )

    return app


def _add_ingest_agent(
    app: faust.App,
    topic: faust.TopicT,
    ingestor: Ingestor,
    metrics: StreamMetrics,
    batch_size: int,
    linger_seconds: float,
) -> None:
    async def ingest(stream: StreamT) -> None:
        async for events in stream.noack_take(batch_size, within=linger_seconds):
            batch: Sequence[EventT] = events  # noack_take buffers the events themselves
            started = time.monotonic()
            try:
                outcomes = await ingestor.handle_batch([_inbound(event) for event in batch])
            except Exception as error:
                # Never reached by design (handle never raises). If it were, acking would lose
                # the batch and carrying on would leave a gap no commit can pass: stop instead,
                # and the restart re-delivers from the last commit.
                log_unexpected(error, f"batch failed, stopping topic={topic.get_topic_name()}")
                await app.crash(error)
                return
            for event in batch:
                await stream.ack(event)
                message = event.message
                metrics.processed_position[(message.topic, message.partition)] = message.offset + 1
            metrics.batches += 1
            log.info(
                "batch delivered topic=%s size=%d processed=%d skipped=%d dead_lettered=%d "
                "elapsed_ms=%d",
                topic.get_topic_name(),
                len(batch),
                outcomes.count(Outcome.PROCESSED),
                outcomes.count(Outcome.SKIPPED),
                outcomes.count(Outcome.DEAD_LETTERED),
                (time.monotonic() - started) * 1000,
            )

    app.agent(topic, name=f"accord.ingest.{topic.get_topic_name()}", concurrency=1)(ingest)


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
    worker.execute_from_commandline()
