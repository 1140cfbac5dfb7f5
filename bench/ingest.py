"""Ingest benchmark: N overdue events already in Kafka → N cases started.

Same run, same servers (an isolated embedded Kafka + Temporal dev server, no worker: this
measures starting cases, not running them):

  (b) baseline  — a bare aiokafka consumer doing signal-with-start, ``batch_size`` at a time
  (a) accord    — the real ``accord stream`` process (faust), same batch size
  (c) ceiling   — signal-with-start from memory, no Kafka, ``batch_size`` in flight
  replay        — the (a) events published again while (a)'s processor runs (a producer retry,
                  a replayed topic): every one recognised as delivered, no Temporal call
  redelivery    — the (a) events again through a fresh consumer group, a new process that
                  remembers nothing: every one de-duplicated by the case itself
  latency       — events produced at half of (a)'s rate: event-to-case-start p50/p99

Rates come from Temporal's own start times (first to last case of the phase), so process
start-up is not counted. Usage: .venv/bin/python -m bench.ingest [--events 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client
from temporalio.exceptions import WorkflowAlreadyStartedError

from bench.common import (
    PySpy,
    bench_stack,
    load_average,
    percentile,
    print_table,
    sample_process,
    scrape,
    write_result,
)
from clients import connect_temporal, kafka_client_options
from schemas.events import LoanOverdue
from settings import Settings
from simulate.portfolio import generate_portfolio
from simulate.profiles import DEFAULT_MIX
from stack.kafka import topic_partitions
from stack.orchestrator import Stack
from stack.supervision import Supervisord
from streams.app import METRICS_PATH
from streams.cases import CASE_WORKFLOW, initial_search_attributes
from workflows.handle import open_case


@dataclass
class PhaseResult:
    name: str
    events: int
    seconds: float
    cpu: dict[str, float]

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("nan")


def overdue_events(count: int, prefix: str) -> list[LoanOverdue]:
    loans = generate_portfolio(
        count, seed=11, mix=DEFAULT_MIX, as_of=datetime.now(UTC), loan_prefix=prefix
    )
    return [loan.overdue for loan in loans]


async def produce(settings: Settings, events: Iterable[LoanOverdue]) -> None:
    producer = AIOKafkaProducer(**kafka_client_options(settings.kafka), acks="all", linger_ms=5)
    await producer.start()
    try:
        for event in events:
            await producer.send(
                settings.kafka.topics.overdue,
                event.model_dump_json().encode(),
                key=event.loan_id.encode(),
            )
        await producer.flush()
    finally:
        await producer.stop()


async def start_times(
    client: Client, prefix: str, expected: int, give_up_after: float
) -> list[float]:
    """Start time (epoch seconds) of every case whose loan id starts with ``prefix``; waits until
    visibility shows ``expected`` of them."""
    deadline = time.monotonic() + give_up_after
    marker = f"case-{prefix}-"
    while True:
        found = [
            execution.start_time.timestamp()
            async for execution in client.list_workflows(f"WorkflowType = '{CASE_WORKFLOW}'")
            if execution.id.startswith(marker)
        ]
        if len(found) >= expected or time.monotonic() > deadline:
            return found
        await asyncio.sleep(1.0)


async def partitions_of(settings: Settings) -> list[TopicPartition]:
    topic = settings.kafka.topics.overdue
    return [TopicPartition(topic, p) for p in range(topic_partitions(settings)[topic])]


async def stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """aiokafka 0.14 may raise CancelledError from stop() right after start(): its own
    committed-offsets task was cancelled before it ran. Only a real cancellation propagates."""
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise


async def end_offsets(
    settings: Settings, partitions: list[TopicPartition]
) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(**kafka_client_options(settings.kafka))
    await consumer.start()
    try:
        return await consumer.end_offsets(partitions)
    finally:
        await stop_consumer(consumer)


async def committed_total(settings: Settings, group: str, partitions: list[TopicPartition]) -> int:
    admin = AIOKafkaAdminClient(**kafka_client_options(settings.kafka))
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group, partitions=partitions)
    finally:
        await admin.close()
    return sum(max(meta.offset, 0) for meta in offsets.values())


async def commit_offsets(
    settings: Settings, group: str, offsets: dict[TopicPartition, int]
) -> None:
    consumer = AIOKafkaConsumer(
        group_id=group, enable_auto_commit=False, **kafka_client_options(settings.kafka)
    )
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit(offsets)
    finally:
        await stop_consumer(consumer)


async def committed_at_least(
    settings: Settings, group: str, partitions: list[TopicPartition], total: int
) -> float:
    """Wait until ``group`` committed ``total`` offsets; returns when that was (monotonic)."""
    while True:
        if await committed_total(settings, group, partitions) >= total:
            return time.monotonic()
        await asyncio.sleep(0.2)


def cpu_of(settings: Settings, names: list[str]) -> dict[str, float]:
    supervisor = Supervisord(settings.data_dir.resolve())
    cpu = {}
    for name in names:
        record = supervisor.read_pid(name)
        if record is not None and record.pid > 0:
            cpu[name] = sample_process(record.pid).cpu_seconds
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu["bench"] = usage.ru_utime + usage.ru_stime
    return cpu


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: round(after[k] - before.get(k, 0.0), 2) for k in after}


async def signal_with_start(client: Client, settings: Settings, event: LoanOverdue) -> None:
    """What a hand-written consumer does: start the case or signal the running one."""
    try:
        await open_case(
            client,
            event,
            task_queue=settings.temporal.task_queue,
            search_attributes=initial_search_attributes(event, datetime.now(UTC).date()),
        )
    except WorkflowAlreadyStartedError:
        pass  # a closed case is not reopened


# ------------------------------------------------------------------------------ phases


async def phase_accord(
    settings: Settings, client: Client, events: list[LoanOverdue], prefix: str, profile: bool
) -> tuple[PhaseResult, Stack, dict[str, object]]:
    count = len(events)
    partitions = await partitions_of(settings)
    # Earlier phases' events are in the topic too: the pipeline starts after them.
    await commit_offsets(
        settings, settings.kafka.consumer_group, await end_offsets(settings, partitions)
    )
    await produce(settings, events)
    total = sum((await end_offsets(settings, partitions)).values())
    before = cpu_of(settings, ["temporal"])
    stream = Stack(settings, only=["stream"])
    await stream.up()
    stream_pid = Supervisord(settings.data_dir.resolve()).read_pid("stream")
    assert stream_pid is not None
    with PySpy(stream_pid.pid, "ingest-stream", enabled=profile) as spy:
        # Kafka offsets, not Temporal visibility, while it runs: listing thousands of cases
        # every second would load the very server being measured.
        await committed_at_least(settings, settings.kafka.consumer_group, partitions, total)
    after = cpu_of(settings, ["temporal", "stream"])
    times = await start_times(client, prefix, count, give_up_after=600)
    result = PhaseResult("accord", len(times), max(times) - min(times), cpu_delta(before, after))
    return result, stream, spy.summary()


async def phase_baseline(
    settings: Settings, client: Client, count: int, prefix: str, batch_size: int
) -> PhaseResult:
    partitions = await partitions_of(settings)
    start = await end_offsets(settings, partitions)
    await produce(settings, overdue_events(count, prefix))
    before = cpu_of(settings, ["temporal"])
    consumer = AIOKafkaConsumer(
        group_id="bench-baseline", enable_auto_commit=False, **kafka_client_options(settings.kafka)
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        for partition in partitions:
            consumer.seek(partition, start[partition])
        handled = 0
        while handled < count:
            batch = await consumer.getmany(timeout_ms=200, max_records=batch_size)
            by_loan: dict[bytes | None, list[LoanOverdue]] = {}
            for messages in batch.values():
                for message in messages:
                    event = LoanOverdue.model_validate_json(message.value or b"")
                    by_loan.setdefault(message.key, []).append(event)

            async def in_order(events: list[LoanOverdue]) -> None:
                for event in events:
                    await signal_with_start(client, settings, event)

            await asyncio.gather(*(in_order(events) for events in by_loan.values()))
            await consumer.commit()  # only after Temporal accepted the batch
            handled += sum(len(events) for events in by_loan.values())
    finally:
        await stop_consumer(consumer)
    after = cpu_of(settings, ["temporal"])
    times = await start_times(client, prefix, count, give_up_after=600)
    return PhaseResult("baseline", len(times), max(times) - min(times), cpu_delta(before, after))


async def phase_ceiling(
    settings: Settings, client: Client, count: int, prefix: str, in_flight: int
) -> PhaseResult:
    events = overdue_events(count, prefix)
    slots = asyncio.Semaphore(in_flight)
    before = cpu_of(settings, ["temporal"])

    async def one(event: LoanOverdue) -> None:
        async with slots:
            await signal_with_start(client, settings, event)

    await asyncio.gather(*(one(event) for event in events))
    after = cpu_of(settings, ["temporal"])
    times = await start_times(client, prefix, count, give_up_after=600)
    return PhaseResult("ceiling", len(times), max(times) - min(times), cpu_delta(before, after))


async def phase_replay(settings: Settings, events: list[LoanOverdue]) -> PhaseResult:
    """The accord phase's events again, into the running processor: rate from its own counter of
    duplicates (first to last recognised), sampled every 20 ms."""
    address = f"{settings.kafka.bootstrap_servers.split(':')[0]}:{settings.streams.web_port}"
    topic = settings.kafka.topics.overdue
    duplicate = {"topic": topic, "outcome": "skipped", "reason": "duplicate"}

    async def duplicates() -> int:
        for family in text_string_to_metric_families(await scrape(address, METRICS_PATH)):
            for sample in family.samples:
                if sample.name == "accord_streams_events_total" and sample.labels == duplicate:
                    return int(sample.value)
        return 0

    already = await duplicates()
    before = cpu_of(settings, ["temporal", "stream"])
    producing = asyncio.create_task(produce(settings, events))
    first_at: float | None = None
    first_count = 0
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        seen = await duplicates() - already
        now = time.monotonic()
        if seen > 0 and first_at is None:
            first_at, first_count = now, seen
        if seen >= len(events):
            break
        await asyncio.sleep(0.02)
    await producing
    after = cpu_of(settings, ["temporal", "stream"])
    assert first_at is not None, "no duplicate recognised"
    return PhaseResult("replay", seen - first_count, now - first_at, cpu_delta(before, after))


async def phase_redelivery(settings: Settings, count: int) -> PhaseResult:
    """A fresh consumer group re-reads every event in the topic; all cases exist already."""
    group = "bench-redelivery"
    redelivery = settings.model_copy(
        update={"kafka": settings.kafka.model_copy(update={"consumer_group": group})}
    )
    partitions = await partitions_of(settings)
    total = sum((await end_offsets(settings, partitions)).values())
    before = cpu_of(settings, ["temporal"])
    stream = Stack(redelivery, only=["stream"])
    await stream.up()
    first_at, first_count = None, 0
    try:
        while True:
            committed = await committed_total(settings, group, partitions)
            now = time.monotonic()
            if committed > 0 and first_at is None:
                first_at, first_count = now, committed
            if committed >= total:
                break
            await asyncio.sleep(0.1)
        after = cpu_of(settings, ["temporal", "stream"])
    finally:
        await stream.down()
    assert first_at is not None
    seconds = now - first_at
    return PhaseResult("redelivery", total - first_count, seconds, cpu_delta(before, after))


async def phase_latency(
    settings: Settings, client: Client, rate: float, seconds: float, prefix: str
) -> dict[str, float | int | None]:
    # The processor must be assigned its partitions and warm before the clock starts.
    await produce(settings, overdue_events(20, f"W{prefix}"))
    await start_times(client, f"W{prefix}", 20, give_up_after=120)
    count = max(10, int(rate * seconds))
    events = overdue_events(count, prefix)
    producer = AIOKafkaProducer(**kafka_client_options(settings.kafka), acks="all", linger_ms=0)
    await producer.start()
    sent_at: dict[str, float] = {}
    started = time.monotonic()
    try:
        for index, event in enumerate(events):
            await asyncio.sleep(max(0.0, started + index / rate - time.monotonic()))
            sent_at[event.case_id] = time.time()
            await producer.send_and_wait(
                settings.kafka.topics.overdue,
                event.model_dump_json().encode(),
                key=event.loan_id.encode(),
            )
    finally:
        await producer.stop()
    latencies = []
    marker = f"case-{prefix}-"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        latencies = [
            (execution.start_time.timestamp() - sent_at[execution.id]) * 1000
            async for execution in client.list_workflows(f"WorkflowType = '{CASE_WORKFLOW}'")
            if execution.id.startswith(marker) and execution.id in sent_at
        ]
        if len(latencies) >= count:
            break
        await asyncio.sleep(1.0)
    return {
        "offered_rate": round(rate, 1),
        "events": count,
        "started": len(latencies),
        "p50_ms": _round(percentile(latencies, 0.50)),
        "p99_ms": _round(percentile(latencies, 0.99)),
        "max_ms": _round(max(latencies, default=None)),
    }


def _round(value: float | None) -> float | None:
    return round(value, 1) if value is not None else None


async def latency_only(arguments: argparse.Namespace) -> None:
    """Only the latency phase, at a given rate: to re-measure it when the machine is quiet."""
    run = datetime.now(UTC).strftime("%H%M%S")
    streams = {"batch_linger_seconds": arguments.linger} if arguments.linger else {}
    async with bench_stack("ingest", keep=arguments.keep, streams=streams) as settings:
        client = await connect_temporal(settings)
        stream = Stack(settings, only=["stream"])
        await stream.up()
        try:
            latency = await phase_latency(
                settings, client, arguments.latency_rate, arguments.latency_seconds, f"L{run}"
            )
        finally:
            await stream.down()
        load = load_average()
    print_table(
        "Ingest latency (isolated embedded stack, no worker)",
        [
            ("event→case start", f"p50 {latency['p50_ms']} ms, p99 {latency['p99_ms']} ms, "
             f"max {latency['max_ms']} ms (target p99 <= 250)"),
            ("offered", f"{latency['offered_rate']} ev/s, {latency['started']}/"
             f"{latency['events']} started; linger {settings.streams.batch_linger_seconds} s"),
            ("load average", str(load)),
        ],
    )  # fmt: skip
    path = write_result(
        "ingest-latency",
        {
            "batch_linger_seconds": settings.streams.batch_linger_seconds,
            "latency": latency,
            "load_average": load,
        },
    )
    print(f"\nresult: {path}")


async def main(arguments: argparse.Namespace) -> None:
    run = datetime.now(UTC).strftime("%H%M%S")
    streams = {"batch_linger_seconds": arguments.linger} if arguments.linger else {}
    async with bench_stack("ingest", keep=arguments.keep, streams=streams) as settings:
        batch_size = settings.streams.batch_size
        client = await connect_temporal(settings)
        loads = {"start": load_average()}
        print(
            f"ingest: {arguments.events} events per phase, batch size {batch_size}, "
            f"linger {settings.streams.batch_linger_seconds} s"
        )
        baseline = await phase_baseline(settings, client, arguments.events, f"B{run}", batch_size)
        loads["baseline"] = load_average()
        print(f"  baseline {baseline.rate:.0f} events/s")
        accord_events = overdue_events(arguments.events, f"A{run}")
        accord, stream, profile = await phase_accord(
            settings, client, accord_events, f"A{run}", arguments.profile
        )
        loads["accord"] = load_average()
        print(f"  accord   {accord.rate:.0f} events/s")
        try:
            replay = await phase_replay(settings, accord_events)
        finally:
            await stream.down()
        loads["replay"] = load_average()
        print(f"  replayed {replay.rate:.0f} events/s")
        ceiling = await phase_ceiling(settings, client, arguments.events, f"C{run}", batch_size)
        loads["ceiling"] = load_average()
        print(f"  ceiling  {ceiling.rate:.0f} events/s")
        redelivery = await phase_redelivery(settings, arguments.events)
        loads["redelivery"] = load_average()
        print(f"  redelivered {redelivery.rate:.0f} events/s")
        stream = Stack(settings, only=["stream"])
        await stream.up()
        try:
            latency = await phase_latency(
                settings, client, accord.rate / 2, arguments.latency_seconds, f"L{run}"
            )
        finally:
            await stream.down()
        loads["latency"] = load_average()
    phases = [baseline, accord, ceiling, replay, redelivery]
    rows = [
        (f"{p.name} events/s", f"{p.rate:8.1f}   ({p.events} in {p.seconds:.2f}s; "
         f"cpu s {p.cpu}; load {loads[p.name]})")
        for p in phases
    ]  # fmt: skip
    rows += [
        ("accord / baseline", f"{accord.rate / baseline.rate:.2f}  (target >= 0.80)"),
        ("accord / ceiling", f"{accord.rate / ceiling.rate:.2f}"),
        ("baseline / ceiling", f"{baseline.rate / ceiling.rate:.2f}"),
        (
            "replayed into the running processor (dedupe) events/s",
            f"{replay.rate:.1f}  (target >= 1000)",
        ),
        ("redelivered to a new process (case dedupe) events/s", f"{redelivery.rate:.1f}"),
        (
            "event→case start at half max rate",
            f"p50 {latency['p50_ms']} ms, p99 {latency['p99_ms']} ms (target p99 <= 250) "
            f"at {latency['offered_rate']} ev/s, {latency['started']}/{latency['events']} "
            f"started; load {loads['latency']}",
        ),
    ]
    print_table("Ingest (isolated embedded stack, no worker)", rows)
    path = write_result(
        "ingest",
        {
            "events_per_phase": arguments.events,
            "batch_size": batch_size,
            "batch_linger_seconds": settings.streams.batch_linger_seconds,
            "phases": {
                p.name: {
                    "events": p.events,
                    "seconds": round(p.seconds, 3),
                    "events_per_second": round(p.rate, 1),
                    "cpu_seconds": p.cpu,
                }
                for p in phases
            },
            "ratios": {
                "accord_over_baseline": round(accord.rate / baseline.rate, 3),
                "accord_over_ceiling": round(accord.rate / ceiling.rate, 3),
            },
            "latency_at_half_max": latency,
            "stream_profile": profile,
            "load_average": loads,
        },
    )
    if profile:
        print("\nstream processor profile (py-spy, busy samples, self time):")
        print("\n".join(profile["self"]))  # type: ignore[arg-type]
    print(f"\nresult: {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5_000)
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument("--linger", type=float, help="streams.batch_linger_seconds (default 0.05)")
    parser.add_argument("--keep", action="store_true", help="keep the data dir (for inspection)")
    parser.add_argument("--profile", action="store_true", help="py-spy the stream processor")
    parser.add_argument(
        "--latency-rate",
        type=float,
        help="only the latency phase, at this many events/s (e.g. half an earlier run's rate)",
    )
    parsed = parser.parse_args()
    asyncio.run(latency_only(parsed) if parsed.latency_rate else main(parsed))
