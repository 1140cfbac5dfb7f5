"""Dev server vs cluster topology in one run: case starts/s, event-to-case-start latency, and
what bounds each.

One topology after the other (never both at once: they would share the cores), each freshly
started in its own data dir on free ports, the same load on both:

  dev      — one broker, the Temporal dev server (one SQLite database), one stream processor
  cluster  — three brokers (replication factor 3, min.insync.replicas 2), the Temporal server
             built from source on PostgreSQL (stack.cluster.history_shards shards), two stream
             processors (stack/cluster.py)

No worker runs (as in bench.ingest: this measures starting cases, not running them).

  throughput — N overdue events already in Kafka, then the stream processors start; rate =
               cases / (last - first case start time, from Temporal's own start times)
  signals    — one payment per open case, all at once: signals/s from the consumer group's
               committed offsets, and CPU per signal
  latency    — events produced at --latency-rate for --latency-seconds after a warm-up;
               latency = case start time - produce time (p50/p99)

While the throughput phase runs, the CPU time of every component's process tree (server,
PostgreSQL with its backends, brokers, stream processors) and of the whole machine is sampled
twice a second; the figures cover first to last case start. A component using about a core or
more, or the machine near all its cores, is what bounds the rate.

Usage: .venv/bin/python -m bench.topology [--events 3000] [--latency-rate 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition

from bench.common import CLOCK_TICKS, bench_stack, load_average, print_table, write_result
from bench.ingest import (
    commit_offsets,
    committed_at_least,
    committed_total,
    end_offsets,
    overdue_events,
    partitions_of,
    phase_latency,
    produce,
    start_times,
)
from clients import connect_temporal, kafka_client_options
from schemas.events import LoanOverdue, LoanPayment, PaymentChannel
from settings import Settings
from stack.isolated import isolated_cluster_settings
from stack.orchestrator import Stack, Topology
from stack.supervision import Supervisord

SAMPLE_SECONDS = 0.5
CLUSTER_INFRASTRUCTURE = ["postgresql", "kafka-1", "kafka-2", "kafka-3", "temporal"]


# --- CPU of process trees and of the machine ------------------------------------------------


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds of a process and all its live descendants, with what their reaped children
    used (PostgreSQL's exited backends are in the postmaster's cutime). By parentage, not by
    process group: PostgreSQL's backends each start a session of their own."""
    children: dict[int, list[int]] = {}
    cpu: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
            pid = int(entry.name)
            children.setdefault(int(fields[1]), []).append(pid)
            cpu[pid] = sum(int(value) for value in fields[11:15])
    total, pending = 0, [root]
    while pending:
        pid = pending.pop()
        total += cpu.get(pid, 0)
        pending.extend(children.get(pid, []))
    return total / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores; everyone's processes)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / CLOCK_TICKS


@dataclass
class Sample:
    at: float  # epoch seconds, comparable with Temporal's start times
    groups: dict[str, float]
    machine: float


@dataclass
class CpuWatch:
    """Samples the named components' process trees until stopped."""

    supervisor: Supervisord
    components: dict[str, list[str]]  # label -> component names (their trees are summed)
    samples: list[Sample] = field(default_factory=list)

    def sample(self) -> None:
        groups = {}
        for label, names in self.components.items():
            seconds = 0.0
            for name in names:
                record = self.supervisor.read_pid(name)
                if record is not None and record.pid > 0:
                    seconds += tree_cpu_seconds(record.pid)
            groups[label] = seconds
        self.samples.append(Sample(time.time(), groups, machine_busy_seconds()))

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.to_thread(self.sample)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SAMPLE_SECONDS)
        self.sample()

    def between(self, start: float, end: float) -> tuple[float, dict[str, float], float]:
        """(seconds, CPU seconds per label, machine busy seconds) from the last sample at or
        before ``start`` to the first at or after ``end``."""
        first = max((s for s in self.samples if s.at <= start), key=lambda s: s.at)
        last = min((s for s in self.samples if s.at >= end), key=lambda s: s.at)
        cpu = {label: last.groups[label] - first.groups[label] for label in last.groups}
        return last.at - first.at, cpu, last.machine - first.machine


# --- one topology ----------------------------------------------------------------------------


@dataclass
class SignalResult:
    """Payments for loans whose case is open: each one a signal to its case."""

    events: int
    seconds: float
    cpu_seconds: dict[str, float]

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("nan")


@dataclass
class TopologyResult:
    name: str
    cases: int
    seconds: float
    cpu_seconds: dict[str, float]
    window_seconds: float
    machine_busy_seconds: float
    signals: SignalResult
    latency: dict[str, Any]
    loads: dict[str, str]

    @property
    def rate(self) -> float:
        return self.cases / self.seconds if self.seconds > 0 else float("nan")

    def cores(self) -> dict[str, float]:
        return {k: v / self.window_seconds for k, v in self.cpu_seconds.items()}

    def bound(self) -> str:
        machine = self.machine_busy_seconds / self.window_seconds
        cores = os.cpu_count() or 1
        busiest, used = max(self.cores().items(), key=lambda item: item[1])
        text = f"busiest: {busiest} at {used:.2f} cores"
        if machine >= 0.9 * cores:
            return f"the machine's CPU ({machine:.2f} of {cores} cores busy); {text}"
        if used >= 0.85:
            return f"{busiest} ({used:.2f} cores; machine {machine:.2f} of {cores})"
        return f"no process saturated (machine {machine:.2f} of {cores} cores); {text}"


async def phase_signals(
    settings: Settings, overdue: list[LoanOverdue], watch: CpuWatch
) -> SignalResult:
    """One payment per open case, all produced at once; rate from the consumer group's
    committed offsets (polled every 0.2 s), CPU from the watch over the same span."""
    topic = settings.kafka.topics.payment
    partitions = [TopicPartition(topic, p) for p in range(settings.kafka.topics.partitions)]
    group = settings.kafka.consumer_group
    base = await committed_total(settings, group, partitions)
    payments = [
        LoanPayment(
            event_id=f"pay-{event.loan_id}",
            occurred_at=datetime.now(UTC),
            schema_version=1,
            loan_id=event.loan_id,
            currency=event.currency,
            amount=event.overdue_amount,
            paid_at=datetime.now(UTC),
            channel=PaymentChannel.BANK_TRANSFER,
        )
        for event in overdue
    ]
    producing = asyncio.create_task(produce_to(settings, topic, payments))
    first: tuple[float, int] | None = None
    while True:
        done = await committed_total(settings, group, partitions) - base
        now = time.time()
        if done > 0 and first is None:
            first = (now, done)
        if done >= len(payments):
            break
        await asyncio.sleep(0.2)
    await producing
    assert first is not None
    await asyncio.to_thread(watch.sample)  # a sample at or after `now`
    _, cpu, _ = watch.between(first[0], now)
    return SignalResult(len(payments) - first[1], now - first[0], cpu)


async def produce_to(settings: Settings, topic: str, events: list[LoanPayment]) -> None:
    producer = AIOKafkaProducer(**kafka_client_options(settings.kafka), acks="all", linger_ms=5)
    await producer.start()
    try:
        for event in events:
            await producer.send(topic, event.model_dump_json().encode(), key=event.loan_id.encode())
        await producer.flush()
    finally:
        await producer.stop()


async def measure(
    name: str,
    settings: Settings,
    topology: Topology,
    streams: list[str],
    components: dict[str, list[str]],
    arguments: argparse.Namespace,
) -> TopologyResult:
    client = await connect_temporal(settings)
    run = datetime.now(UTC).strftime("%H%M%S")
    prefix = f"T{name[0].upper()}{run}"
    loads = {"start": load_average()}
    partitions = await partitions_of(settings)
    # The group exists, at the start of the topics, before anything is produced: its offsets
    # can be watched from the first moment (and the broker has its group coordinator ready).
    group = settings.kafka.consumer_group
    await commit_offsets(settings, group, await end_offsets(settings, partitions))
    events = overdue_events(arguments.events, prefix)
    await produce(settings, events)
    total = sum((await end_offsets(settings, partitions)).values())
    supervisor = Supervisord(settings.data_dir.resolve())
    watch = CpuWatch(supervisor, components)
    stop = asyncio.Event()
    sampling = asyncio.create_task(watch.run(stop))
    processors = Stack(settings, only=streams, topology=topology)
    try:
        await processors.up()
        await committed_at_least(settings, group, partitions, total)
        times = await start_times(client, prefix, arguments.events, give_up_after=600)
        loads["throughput"] = load_average()
        print(f"  {name}: {len(times)} cases in {max(times) - min(times):.1f}s", flush=True)
        signals = await phase_signals(settings, events, watch)
        loads["signals"] = load_average()
        print(f"  {name}: {signals.events} signals in {signals.seconds:.1f}s", flush=True)
        stop.set()
        await sampling
        window, cpu, machine = watch.between(min(times), max(times))
        latency = await phase_latency(
            settings, client, arguments.latency_rate, arguments.latency_seconds, f"{prefix}L"
        )
        loads["latency"] = load_average()
    finally:
        stop.set()
        await processors.down()
    return TopologyResult(
        name=name,
        cases=len(times),
        seconds=max(times) - min(times),
        cpu_seconds={k: round(v, 2) for k, v in cpu.items()},
        window_seconds=window,
        machine_busy_seconds=machine,
        signals=signals,
        latency=latency,
        loads=loads,
    )


async def run_dev(arguments: argparse.Namespace) -> TopologyResult:
    async with bench_stack("topology-dev") as settings:
        return await measure(
            "dev",
            settings,
            Topology.DEV,
            ["stream"],
            {"temporal dev server (SQLite)": ["temporal"], "kafka": ["kafka"],
             "stream processors": ["stream"]},
            arguments,
        )  # fmt: skip


def cluster_data_dir() -> Path:
    data_dir = Path(tempfile.mkdtemp(prefix="accord-bench-cluster-"))
    data_dir.chmod(0o711)  # PostgreSQL's service user enters it when we are root
    return data_dir


@contextlib.asynccontextmanager
async def cluster_infrastructure() -> AsyncIterator[Settings]:
    data_dir = cluster_data_dir()
    settings = isolated_cluster_settings(data_dir, log_level="WARNING")
    stack = Stack(
        settings,
        only=CLUSTER_INFRASTRUCTURE,
        topology=Topology.CLUSTER,
        report=lambda m: print(f"  stack: {m}"),
    )
    try:
        await stack.up()
        yield settings
    finally:
        await stack.down()
        shutil.rmtree(data_dir, ignore_errors=True)


async def run_cluster(arguments: argparse.Namespace) -> TopologyResult:
    async with cluster_infrastructure() as settings:
        return await measure(
            "cluster",
            settings,
            Topology.CLUSTER,
            ["stream-1", "stream-2"],
            {"temporal server": ["temporal"], "postgresql": ["postgresql"],
             "kafka (3 brokers)": ["kafka-1", "kafka-2", "kafka-3"],
             "stream processors": ["stream-1", "stream-2"]},
            arguments,
        )  # fmt: skip


# --- the report ------------------------------------------------------------------------------


def rows(result: TopologyResult) -> list[tuple[str, Any]]:
    per_case = {
        label: f"{1000 * seconds / result.cases:.1f} ms"
        for label, seconds in result.cpu_seconds.items()
    }
    cores = {label: f"{value:.2f}" for label, value in result.cores().items()}
    latency = result.latency
    return [
        (f"{result.name}: case starts/s", f"{result.rate:.1f}  ({result.cases} in "
         f"{result.seconds:.1f}s; load {result.loads['throughput']})"),
        (f"{result.name}: signals/s (payment → open case)", f"{result.signals.rate:.1f}  "
         f"({result.signals.events} in {result.signals.seconds:.1f}s; CPU per signal "
         + str({k: f"{1000 * v / result.signals.events:.1f} ms"
                for k, v in result.signals.cpu_seconds.items()})
         + f"; load {result.loads['signals']})"),
        (f"{result.name}: event→case start", f"p50 {latency['p50_ms']} ms, p99 "
         f"{latency['p99_ms']} ms at {latency['offered_rate']} ev/s "
         f"({latency['started']}/{latency['events']}; load {result.loads['latency']})"),
        (f"{result.name}: cores used", str(cores)),
        (f"{result.name}: CPU per case start", str(per_case)),
        (f"{result.name}: bound", result.bound()),
    ]  # fmt: skip


async def main(arguments: argparse.Namespace) -> None:
    command = shlex.join([Path(sys.executable).name, "-m", "bench.topology", *sys.argv[1:]])
    print(f"{command}\n  {arguments.events} events; load {load_average()}", flush=True)
    dev = await run_dev(arguments)
    cluster = await run_cluster(arguments)
    print_table(
        f"Dev server vs cluster topology (no worker) — {command}",
        [
            *rows(dev),
            *rows(cluster),
            ("cluster / dev case starts", f"{cluster.rate / dev.rate:.2f}"),
            ("load average at the end", load_average()),
        ],
    )
    path = write_result(
        "topology",
        {
            "command": command,
            "events": arguments.events,
            "topologies": {
                r.name: {
                    "case_starts_per_second": round(r.rate, 1),
                    "cases": r.cases,
                    "seconds": round(r.seconds, 2),
                    "cpu_seconds": r.cpu_seconds,
                    "cores_used": {k: round(v, 2) for k, v in r.cores().items()},
                    "machine_busy_cores": round(r.machine_busy_seconds / r.window_seconds, 2),
                    "bound": r.bound(),
                    "signals": {
                        "events": r.signals.events,
                        "seconds": round(r.signals.seconds, 2),
                        "per_second": round(r.signals.rate, 1),
                        "cpu_seconds": {k: round(v, 2) for k, v in r.signals.cpu_seconds.items()},
                    },
                    "latency": r.latency,
                    "load_average": r.loads,
                }
                for r in (dev, cluster)
            },
        },
    )
    print(f"\nresult: {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3_000)
    parser.add_argument("--latency-rate", type=float, default=20.0)
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    asyncio.run(main(parser.parse_args()))
