"""Streams under failure: Temporal down, the processor SIGKILLed, a group member lost.

Real Kafka, the real Temporal dev server, `accord stream` as real processes. Every check is a
condition waited on with a deadline; the only timed pause is the length of the outage itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.client import Client

from settings import Settings
from stack.orchestrator import Stack
from tests.integration.streams_support import (
    EventProducer,
    StreamProcess,
    case_of,
    case_workflow_worker,
    create_topics,
    loan_ids,
    new_tag,
    overdue_event,
    payment_event,
    stream_processes,
    streams_test_settings,
    uncommitted,
    wait_for_applied,
    wait_for_case_count,
    wait_processed,
    wait_until,
)

pytestmark = pytest.mark.integration

OUTAGE_SECONDS = 20.0
ARRIVAL_INTERVAL_SECONDS = 0.1  # how fast core banking keeps publishing during the outage


@contextlib.asynccontextmanager
async def temporal_stopped(stack_settings: Settings) -> AsyncIterator[None]:
    """The session's Temporal dev server stopped, then restarted on the same port and database."""
    temporal = Stack(stack_settings, only=["temporal"])
    await temporal.down()
    try:
        yield
    finally:
        await temporal.up()


async def retries(stream: StreamProcess) -> float:
    metrics = await stream.metrics()
    return sum(v for k, v in metrics.items() if k.startswith("accord_streams_retries_total"))


async def test_temporal_down_for_20s_while_events_keep_arriving(
    stack_settings: Settings, temporal_client: Client, tmp_path: Path
) -> None:
    tag = new_tag()
    settings = streams_test_settings(stack_settings, tag)
    await create_topics(settings)
    topics = settings.kafka.topics
    existing = loan_ids(f"{tag}a", 100)  # cases open before the outage; paid during it
    arriving = loan_ids(f"{tag}b", int(OUTAGE_SECONDS / ARRIVAL_INTERVAL_SECONDS))

    async with (
        case_workflow_worker(temporal_client, settings),
        stream_processes(settings, tmp_path) as (stream,),
        EventProducer(settings) as producer,
    ):
        stream.start()
        await producer.send_events(
            topics.overdue, [overdue_event(loan, f"od-{loan}") for loan in existing]
        )
        await wait_processed(stream, topics.overdue, len(existing))

        async with temporal_stopped(stack_settings):
            outage_ends = time.monotonic() + OUTAGE_SECONDS
            for index, loan in enumerate(arriving):
                await producer.send_events(topics.overdue, [overdue_event(loan, f"od-{loan}")])
                if index < len(existing):
                    paid = existing[index]
                    await producer.send_events(topics.payment, [payment_event(paid, f"pay-{paid}")])
                await asyncio.sleep(
                    max(0.0, min(ARRIVAL_INTERVAL_SECONDS, outage_ends - time.monotonic()))
                )

            async def retrying() -> bool:
                return await retries(stream) > 0

            await wait_until(retrying, within=10, what="the processor retrying in place")
            assert await stream.count(topics.overdue, "processed") == len(existing)

        await wait_processed(stream, topics.overdue, len(existing) + len(arriving))
        await wait_processed(stream, topics.payment, len(existing))
        expected = {case_of(loan): {f"od-{loan}", f"pay-{loan}"} for loan in existing}
        expected |= {case_of(loan): {f"od-{loan}"} for loan in arriving}
        await wait_for_applied(temporal_client, expected, within=60)
        metrics = await stream.metrics()
        assert not any("dead_lettered" in k or "skipped" in k for k, v in metrics.items() if v)

        await wait_for_case_count(temporal_client, f"L{tag}", len(expected))


async def test_processor_killed_mid_batch_and_restarted(
    stack_settings: Settings, temporal_client: Client, tmp_path: Path
) -> None:
    tag = new_tag()
    settings = streams_test_settings(stack_settings, tag)
    await create_topics(settings)
    topics = settings.kafka.topics
    loans = loan_ids(tag, 300)

    async with (
        case_workflow_worker(temporal_client, settings),
        stream_processes(settings, tmp_path) as (first,),
        EventProducer(settings) as producer,
    ):
        first.start()
        await producer.send_events(
            topics.overdue, [overdue_event(loan, f"od1-{loan}") for loan in loans]
        )
        await wait_processed(first, topics.overdue, len(loans))

        # Day two: the overdue event again (new event id) and a payment, for every loan.
        await producer.send_events(
            topics.overdue, [overdue_event(loan, f"od2-{loan}", days_past_due=31) for loan in loans]
        )
        await producer.send_events(
            topics.payment, [payment_event(loan, f"pay-{loan}") for loan in loans]
        )

        payments_before_kill = 0

        async def mid_stream() -> bool:
            nonlocal payments_before_kill
            payments_before_kill = await first.count(topics.payment, "processed")
            return payments_before_kill >= 50

        await wait_until(mid_stream, within=60, what="the processor part-way through")
        first.kill()
        assert payments_before_kill < len(loans), "killed too late to prove anything"

        # The same settings (group, web port): a restart of the same processor.
        second = StreamProcess(settings, tmp_path, "stream-restarted").start()
        try:
            expected = {
                case_of(loan): {f"od1-{loan}", f"od2-{loan}", f"pay-{loan}"} for loan in loans
            }
            await wait_for_applied(temporal_client, expected, within=90)
            assert await second.count(topics.payment, "skipped") == 0
            assert await second.count(topics.overdue, "dead_lettered") == 0

            # And the offsets follow: everything delivered ends up committed.
            async def all_committed() -> bool:
                return await uncommitted(settings, [topics.overdue, topics.payment]) == 0

            await wait_until(all_committed, within=30, what="the group's offsets committed")
        finally:
            second.stop()

    await wait_for_case_count(temporal_client, f"L{tag}-", len(loans))


async def test_two_processors_one_killed_mid_stream(
    stack_settings: Settings, temporal_client: Client, tmp_path: Path
) -> None:
    tag = new_tag()
    settings = streams_test_settings(stack_settings, tag)
    await create_topics(settings)
    topic = settings.kafka.topics.overdue
    loans = loan_ids(tag, 400)

    async with (
        case_workflow_worker(temporal_client, settings),
        stream_processes(settings, tmp_path, count=2) as (doomed, survivor),
        EventProducer(settings) as producer,
    ):
        doomed.start()
        survivor.start()

        async def both_assigned() -> bool:
            return bool(await doomed.assigned_partitions()) and bool(
                await survivor.assigned_partitions()
            )

        await wait_until(both_assigned, within=60, what="both processors sharing the partitions")

        async def publish_steadily() -> None:
            for loan in loans:
                await producer.send_events(topic, [overdue_event(loan, f"od-{loan}")])
                await asyncio.sleep(0.01)

        publishing = asyncio.create_task(publish_steadily())
        try:

            async def doomed_working() -> bool:
                return await doomed.count(topic, "processed") >= 20

            await wait_until(doomed_working, within=60, what="the first processor processing")
            doomed.kill()
            await publishing
        finally:
            publishing.cancel()

        async def survivor_owns_everything() -> bool:
            topics = settings.kafka.topics
            return (
                len(await survivor.assigned_partitions())
                == len(topics.inbound()) * topics.partitions
            )

        await wait_until(survivor_owns_everything, within=60, what="the survivor taking over")
        await wait_for_applied(
            temporal_client, {case_of(loan): {f"od-{loan}"} for loan in loans}, within=90
        )

        await wait_for_case_count(temporal_client, f"L{tag}-", len(loans))
