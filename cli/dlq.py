"""``accord dlq``: look into the dead-letter topics and re-drive them.

Dead letters keep the original key and value, which may carry financial data: ``inspect`` prints
the error, ids, offsets and sizes only, unless asked for the values.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import click
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import for_code

from cli.reach import run_against_stack
from clients import kafka_client_options
from settings import Settings, get_settings
from streams import dead_letters

REDRIVE_GROUP_SUFFIX = ".dlq-redrive"
FETCH_TIMEOUT_MS = 1000


@click.group()
def dlq() -> None:
    """Dead-letter topics (<topic>.dlq): inspect and re-drive."""


@dlq.command()
@click.argument("topic", required=False)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="At most this many records per dead-letter topic.",
)
@click.option(
    "--show-values",
    is_flag=True,
    help="Also print the original values (may contain personal or financial data).",
)
def inspect(topic: str | None, limit: int, show_values: bool) -> None:
    """Print the dead letters of TOPIC (an inbound topic or its .dlq), or of every inbound topic."""
    settings = get_settings()
    names = [dead_letter_topic(settings, topic)] if topic else dead_letter_topics(settings)
    run_against_stack(settings, _inspect(settings, names, limit, show_values))


@dlq.command()
@click.argument("topic")
def redrive(topic: str) -> None:
    """Re-publish TOPIC's dead letters to the topic they came from, each once.

    Progress is committed on the dead-letter topic (consumer group <group>.dlq-redrive) after each
    record is re-published, so a second run only re-drives what was dead-lettered since. A record
    re-driven but not yet committed when the command dies is re-driven again; the case ignores
    an event id it has already applied. A dead letter whose value was cut to fit is not
    re-driven: its whole original is at the topic, partition and offset it names.
    """
    settings = get_settings()
    name = dead_letter_topic(settings, topic)
    redriven, partial = run_against_stack(settings, _redrive(settings, name))
    click.echo(f"re-drove {redriven} record(s) from {name}")
    for record in partial:
        click.echo(
            f"not re-driven (value cut to fit; original at {origin_of(record)}): "
            f"{record.topic}[{record.partition}]@{record.offset}"
        )


def dead_letter_topics(settings: Settings) -> list[str]:
    topics = settings.kafka.topics
    return [topics.dlq(name) for name in topics.inbound()]


def dead_letter_topic(settings: Settings, topic: str) -> str:
    topics = settings.kafka.topics
    if topic in dead_letter_topics(settings):
        return topic
    if topic in topics.inbound():
        return topics.dlq(topic)
    raise click.BadParameter(
        f"{topic!r} is neither an inbound topic nor a dead-letter topic "
        f"(inbound: {', '.join(topics.inbound())})",
        param_hint="TOPIC",
    )


async def _partitions(settings: Settings, topic: str) -> list[TopicPartition]:
    """The topic's partitions; none if it does not exist (nothing was ever dead-lettered)."""
    admin = AIOKafkaAdminClient(**kafka_client_options(settings.kafka))
    await admin.start()
    try:
        # Listed first: describing a missing topic would auto-create it on many brokers.
        if topic not in await admin.list_topics():
            return []
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described["error_code"] != 0:
        raise click.ClickException(f"{topic}: {for_code(described['error_code']).__name__}")
    return [TopicPartition(topic, p["partition"]) for p in described["partitions"]]


async def _records(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition], *, from_committed: bool
) -> AsyncIterator[ConsumerRecord]:
    """Every record present when called (a snapshot: later arrivals wait for the next run)."""
    if not partitions:
        return
    consumer.assign(partitions)
    end = await consumer.end_offsets(partitions)
    for tp in partitions:
        committed = await consumer.committed(tp) if from_committed else None
        if committed is None:
            await consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, committed)
    while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
        batches = await consumer.getmany(*partitions, timeout_ms=FETCH_TIMEOUT_MS)
        for tp, records in sorted(batches.items(), key=lambda item: item[0].partition):
            for record in records:
                if record.offset < end[tp]:
                    yield record


async def _consumer(settings: Settings, group_id: str | None) -> AIOKafkaConsumer:
    # "earliest", not aiokafka's "latest": right after ``assign`` the consumer resets every
    # partition without a position in the background, and a reset to the end still in flight
    # when ``seek_to_beginning`` is asked wins over it (aiokafka 0.14,
    # ``Fetcher._update_fetch_positions``): ``inspect`` then showed no dead letter at all.
    consumer = AIOKafkaConsumer(
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **kafka_client_options(settings.kafka),
    )
    try:
        await consumer.start()
    except BaseException:
        await consumer.stop()
        raise
    return consumer


async def _inspect(settings: Settings, topics: list[str], limit: int, show_values: bool) -> None:
    consumer = await _consumer(settings, group_id=None)
    try:
        for topic in topics:
            shown = 0
            partitions = await _partitions(settings, topic)
            async with contextlib.aclosing(
                _records(consumer, partitions, from_committed=False)
            ) as records:
                async for record in records:
                    click.echo(describe(record, show_values))
                    shown += 1
                    if shown >= limit:
                        break
            click.echo(f"{topic}: {shown} record(s) shown")
    finally:
        await consumer.stop()


def origin_of(record: ConsumerRecord) -> str:
    headers = dead_letters.header_map(record.headers)
    return "/".join(
        headers.get(name, "?")
        for name in (
            dead_letters.ORIGINAL_TOPIC,
            dead_letters.ORIGINAL_PARTITION,
            dead_letters.ORIGINAL_OFFSET,
        )
    )


def describe(record: ConsumerRecord, show_value: bool) -> str:
    headers = dead_letters.header_map(record.headers)
    key = record.key.decode(errors="replace") if record.key is not None else "-"
    truncated_from = headers.get(dead_letters.TRUNCATED_FROM)
    line = (
        f"{record.topic}[{record.partition}]@{record.offset} from={origin_of(record)} "
        f"kind={headers.get(dead_letters.ERROR_KIND, '?')} "
        f"event_id={headers.get(dead_letters.EVENT_ID, '-')} key={key} "
        f"value_bytes={len(record.value or b'')}"
        f"{f' truncated_from={truncated_from}' if truncated_from else ''} "
        f"at={headers.get(dead_letters.DEAD_LETTERED_AT, '?')}\n"
        f"    error: {headers.get(dead_letters.ERROR, '?')}"
    )
    if show_value:
        line += f"\n    value: {(record.value or b'').decode(errors='replace')}"
    return line


async def _redrive(settings: Settings, topic: str) -> tuple[int, list[ConsumerRecord]]:
    consumer = await _consumer(settings, settings.kafka.consumer_group + REDRIVE_GROUP_SUFFIX)
    producer = AIOKafkaProducer(enable_idempotence=True, **kafka_client_options(settings.kafka))
    await producer.start()
    redriven = 0
    partial: list[ConsumerRecord] = []
    try:
        # A dead-letter topic only holds its own inbound topic's records.
        origin = topic.removesuffix(settings.kafka.topics.dlq_suffix)
        partitions = await _partitions(settings, topic)
        async for record in _records(consumer, partitions, from_committed=True):
            tp = TopicPartition(record.topic, record.partition)
            if dead_letters.is_partial(record.headers):
                partial.append(record)
                await consumer.commit({tp: record.offset + 1})
                continue
            await producer.send_and_wait(
                origin,
                record.value,
                key=record.key,
                headers=dead_letters.without_dead_letter_headers(record.headers),
            )
            await consumer.commit({tp: record.offset + 1})
            redriven += 1
    finally:
        await producer.stop()
        await consumer.stop()
    return redriven, partial
