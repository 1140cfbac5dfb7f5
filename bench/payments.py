"""Payment-volume benchmark: N payment events over L loans of which a share have an open case,
through the real ``accord stream``, side by side with another revision's stream processor
(default ``main``) in the same run, on the same servers and the same topic.

1. Open the cases: one overdue event per loan with a case, through this tree's processor.
2. Produce N payment events, round-robin over the L loans (every loan's payments spread over the
   whole topic), before any processor reads them.
3. *this tree*: ``accord stream`` (a fresh process: its open-case table is rebuilt from the
   changelog first) reads the payments to the end.
4. *baseline*: the other revision's ``accord stream`` — its tree exported with ``git archive``
   and run from there, so it imports its own ``streams``, ``settings`` and ``schemas`` — in its
   own consumer group, from the first payment, for ``--baseline-seconds`` (it cannot finish
   1,000,000 in reasonable time when every event of a loan without a case is a visibility query).

Rates come from the consumer group's committed offsets (first commit to the last, or to the end
of the window): events/s read, decided and acknowledged. Temporal calls are counted by the
Temporal server itself (the dev server's frontend ``service_requests`` by operation), so both
revisions are measured the same way; this tree's own counter is shown beside it.
No worker runs: this measures ingestion, not the cases.

Usage: .venv/bin/python -m bench.payments [--events 1000000 --loans 100000 --open-share 0.01]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client.parser import text_string_to_metric_families

from bench.common import (
    PySpy,
    bench_stack,
    load_average,
    print_table,
    sample_process,
    scrape,
    write_result,
)
from bench.ingest import commit_offsets, committed_total, end_offsets, overdue_events
from clients import kafka_client_options
from schemas.events import LoanPayment, parse_inbound
from settings import Settings
from stack.environment import child_env
from stack.orchestrator import Stack
from stack.ports import pick_free_ports
from stack.supervision import Supervisord
from streams.app import METRICS_PATH

REPO_ROOT = Path(__file__).resolve().parent.parent
PAID_AT = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
# Frontend operations that are not the stream's (the bench's own client, the server's own).
NOT_THE_STREAMS = re.compile(
    r"^(Poll|Respond|Describe|GetSystemInfo|Operator|Update|Register|RecordWorkerHeartbeat)"
)


@dataclass
class Phase:
    name: str
    events: int = 0
    seconds: float = 0.0
    cpu_per_event_ms: float = 0.0  # the processor's, from its first commit to the end
    calls: dict[str, int] = field(default_factory=dict)  # counted by the Temporal server
    own_count: dict[str, float] = field(default_factory=dict)  # this tree's counters
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    load: str = ""

    def take(self, followed: Followed) -> None:
        self.events, self.seconds = followed.events, followed.seconds
        self.cpu_per_event_ms = 1000 * followed.cpu_seconds / max(followed.events, 1)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("nan")

    @property
    def calls_total(self) -> int:
        return sum(self.calls.values())


# --------------------------------------------------------------------------- Temporal's count


def listening_ports(pid: int) -> set[int]:
    """TCP ports a process listens on (Linux /proc): the dev server's metrics port is random."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            match = re.fullmatch(r"socket:\[(\d+)\]", os.readlink(fd))
        except OSError:
            continue
        if match:
            inodes.add(match.group(1))
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


async def temporal_metrics_address(settings: Settings) -> str:
    record = Supervisord(settings.data_dir.resolve()).read_pid("temporal")
    assert record is not None, "no Temporal server running"
    host = settings.temporal.address.split(":")[0]
    for port in sorted(listening_ports(record.pid)):
        try:
            text = await asyncio.wait_for(scrape(f"{host}:{port}", "/metrics"), 3)
        except (OSError, TimeoutError):
            continue
        if "service_requests" in text:
            return f"{host}:{port}"
    raise RuntimeError("the Temporal dev server's /metrics port was not found")


async def server_calls(address: str, namespace: str) -> dict[str, int]:
    """Requests the Temporal frontend served in ``namespace``, by operation."""
    calls: dict[str, int] = {}
    for family in text_string_to_metric_families(await scrape(address, "/metrics")):
        for sample in family.samples:
            labels = sample.labels
            if (
                sample.name in ("service_requests", "service_requests_total")
                and labels.get("service_name") == "frontend"
                and labels.get("namespace") == namespace
                and not NOT_THE_STREAMS.match(labels.get("operation", ""))
            ):
                calls[labels["operation"]] = calls.get(labels["operation"], 0) + int(sample.value)
    return calls


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


async def own_counters(settings: Settings) -> dict[str, float]:
    """This tree's processor's Temporal-call and outcome counters."""
    host = settings.temporal.address.split(":")[0]
    text = await scrape(f"{host}:{settings.streams.web_port}", METRICS_PATH)
    wanted: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "accord_streams_temporal_calls_total":
                wanted[f"temporal {sample.labels['operation']}"] = sample.value
            elif sample.name == "accord_streams_events_total":
                key = f"{sample.labels['outcome']} {sample.labels['reason']}".strip()
                wanted[key] = wanted.get(key, 0) + sample.value
            elif sample.name == "accord_streams_ordering_probes_total":
                wanted["ordering probes"] = sample.value
    return wanted


# --------------------------------------------------------------------------- workload


def payment_values(loans: list[str], count: int) -> Iterator[tuple[bytes, bytes]]:
    """``count`` valid payment events, round-robin over ``loans``: (key, value)."""
    template = LoanPayment(
        event_id="EVENT",
        occurred_at=PAID_AT,
        schema_version=1,
        loan_id="LOAN",
        currency="CNY",
        amount=Decimal("125.00"),
        paid_at=PAID_AT,
        channel="bank_transfer",
    ).model_dump_json()
    head, rest = template.split('"EVENT"', 1)
    middle, tail = rest.split('"LOAN"', 1)
    for index in range(count):
        loan = loans[index % len(loans)]
        yield loan.encode(), f'{head}"p{index}-{loan}"{middle}"{loan}"{tail}'.encode()


async def produce(settings: Settings, topic: str, records: Iterator[tuple[bytes, bytes]]) -> int:
    producer = AIOKafkaProducer(
        **kafka_client_options(settings.kafka), acks=1, linger_ms=50, max_batch_size=512 * 1024
    )
    await producer.start()
    sent = 0
    try:
        for key, value in records:
            await producer.send(topic, value, key=key)
            sent += 1
        await producer.flush()
    finally:
        await producer.stop()
    return sent


async def partitions(settings: Settings, topic: str) -> list[TopicPartition]:
    return [TopicPartition(topic, p) for p in range(settings.kafka.topics.partitions)]


async def wait_committed(settings: Settings, group: str, topic: str, total: int) -> None:
    await follow_commits(settings, group, topic, total, None)


@dataclass
class Followed:
    events: int
    seconds: float
    cpu_seconds: float  # of the processor, over the same span


async def follow_commits(
    settings: Settings,
    group: str,
    topic: str,
    total: int,
    window: float | None,
    pid: int | None = None,
    exited: Callable[[], int | None] | None = None,
) -> Followed:
    """Events committed from the group's first commit until ``total`` or the window's end, the
    seconds that took and the processor's CPU seconds in between (its start-up excluded).
    ``exited`` (the processor's exit code, None while it runs): a processor that died fails the
    run instead of leaving it waiting for a first commit forever."""
    tps = await partitions(settings, topic)
    first: tuple[float, int] | None = None
    first_cpu = 0.0
    while True:
        if exited is not None and (code := exited()) is not None:
            raise RuntimeError(f"the processor exited with {code} (its log: logs/stream-*.log)")
        try:
            committed = await committed_total(settings, group, tps)
        except KafkaError as error:
            if not error.retriable:
                raise
            committed = 0 if first is None else first[1]  # the coordinator is not up yet
        now = time.monotonic()
        if first is None and committed > 0:
            first = (now, committed)
            first_cpu = cpu(pid) if pid else 0.0
        if first is not None and (
            committed >= total or (window is not None and now - first[0] >= window)
        ):
            spent = cpu(pid) - first_cpu if pid else 0.0
            return Followed(committed - first[1], now - first[0], spent)
        await asyncio.sleep(0.25)


# --------------------------------------------------------------------------- the processors


def export_tree(ref: str, into: Path) -> tuple[Path, str]:
    """``ref``'s files (``git archive``) in ``into``, and its commit."""
    commit = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", ref],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    archive = into / f"{commit}.tar"
    with archive.open("wb") as out:
        subprocess.run(["git", "-C", str(REPO_ROOT), "archive", ref], check=True, stdout=out)
    tree = into / commit
    with tarfile.open(archive) as tar:
        tar.extractall(tree, filter="data")
    return tree, commit


def this_commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, check=False
        ).stdout.strip()

    dirty = "+changes" if git("status", "--porcelain", "--untracked-files=no") else ""
    return git("rev-parse", "--short", "HEAD") + dirty


class BaselineProcessor:
    """Another revision's ``accord stream``, run from its exported tree."""

    def __init__(self, settings: Settings, tree: Path) -> None:
        self.settings = settings
        self.tree = tree
        self.log = settings.data_dir / "logs" / "stream-baseline.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        env = child_env(self.settings) | {"PYTHONPATH": str(self.tree)}
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cli.main", "stream"],
                cwd=self.tree,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


def with_group(settings: Settings, group: str, data_dir: Path) -> Settings:
    (port,) = pick_free_ports(1, settings.temporal.address.split(":")[0])
    return settings.model_copy(
        update={
            "data_dir": data_dir,
            "kafka": settings.kafka.model_copy(update={"consumer_group": group}),
            "streams": settings.streams.model_copy(update={"web_port": port}),
        }
    )


def cpu(pid: int) -> float:
    return sample_process(pid).cpu_seconds


# --------------------------------------------------------------------------- run


async def run(arguments: argparse.Namespace) -> None:
    stamp = datetime.now(UTC).strftime("%H%M%S")
    streams = {"batch_size": arguments.batch_size} if arguments.batch_size else {}
    async with bench_stack("payments", keep=arguments.keep, streams=streams) as settings:
        topics = settings.kafka.topics
        namespace = settings.temporal.namespace
        temporal_pid = Supervisord(settings.data_dir.resolve()).read_pid("temporal")
        assert temporal_pid is not None
        metrics_address = await temporal_metrics_address(settings)
        stride = round(1 / arguments.open_share)
        opened = overdue_events(arguments.loans // stride, f"P{stamp}")
        with_case = {event.loan_id for event in opened}
        others = [f"N{stamp}-{i:06d}" for i in range(arguments.loans - len(with_case))]
        # Loans with a case spread evenly through the others.
        loans = others[:]
        for index, loan in enumerate(sorted(with_case)):
            loans.insert(index * stride, loan)
        parse_inbound(LoanPayment.TOPIC, next(payment_values(loans, 1))[1])  # a valid event
        print(
            f"payments: {arguments.events:,} events over {len(loans):,} loans, "
            f"{len(with_case):,} with an open case; load {load_average()}"
        )

        # 1. The cases, opened by this tree's processor (its table records them).
        sent = await produce(
            settings,
            topics.overdue,
            ((e.loan_id.encode(), e.model_dump_json().encode()) for e in opened),
        )
        stream = Stack(settings, only=["stream"])
        await stream.up()
        await wait_committed(settings, settings.kafka.consumer_group, topics.overdue, sent)
        await stream.down()
        print(f"  {sent:,} cases opened")

        # 2. The payments, all in Kafka before a processor reads them.
        started = time.monotonic()
        total = await produce(settings, topics.payment, payment_values(loans, arguments.events))
        print(f"  {total:,} payments produced in {time.monotonic() - started:.0f} s")

        # 3. This tree.
        phase = Phase(f"this tree ({this_commit()})")
        calls_before = await server_calls(metrics_address, namespace)
        temporal_cpu = cpu(temporal_pid.pid)
        stream = Stack(settings, only=["stream"])
        await stream.up()
        stream_pid = Supervisord(settings.data_dir.resolve()).read_pid("stream")
        assert stream_pid is not None
        try:
            with PySpy(stream_pid.pid, "payments-stream", enabled=arguments.profile) as spy:
                followed = await follow_commits(
                    settings, settings.kafka.consumer_group, topics.payment, total, None,
                    stream_pid.pid,
                )  # fmt: skip
                phase.take(followed)
            phase.own_count = await own_counters(settings)
            phase.cpu_seconds = {
                "stream": round(cpu(stream_pid.pid), 1),
                "temporal": round(cpu(temporal_pid.pid) - temporal_cpu, 1),
            }
        finally:
            await stream.down()
        phase.calls = delta(calls_before, await server_calls(metrics_address, namespace))
        phase.load = load_average()
        profile = spy.summary()
        print(f"  this tree: {phase.rate:,.0f} events/s, {phase.calls_total:,} Temporal calls")

        # 4. The baseline revision, same topic, its own group, from the first payment.
        baseline = Phase(arguments.baseline)
        work = Path(tempfile.mkdtemp(prefix="accord-bench-baseline-"))
        try:
            tree, commit = export_tree(arguments.baseline, work)
            baseline.name = f"{arguments.baseline} ({commit})"
            base_settings = with_group(
                settings, f"{settings.kafka.consumer_group}-baseline", settings.data_dir
            )
            overdue_tps = await partitions(settings, topics.overdue)
            await commit_offsets(
                settings,
                base_settings.kafka.consumer_group,
                await end_offsets(settings, overdue_tps),
            )
            calls_before = await server_calls(metrics_address, namespace)
            temporal_cpu = cpu(temporal_pid.pid)
            processor = BaselineProcessor(base_settings, tree)
            processor.start()
            assert processor.process is not None
            try:
                followed = await follow_commits(
                    settings,
                    base_settings.kafka.consumer_group,
                    topics.payment,
                    total,
                    arguments.baseline_seconds,
                    processor.process.pid,
                    processor.process.poll,
                )
                baseline.take(followed)
                baseline.cpu_seconds = {
                    "stream": round(cpu(processor.process.pid), 1),
                    "temporal": round(cpu(temporal_pid.pid) - temporal_cpu, 1),
                }
            finally:
                processor.stop()
            baseline.calls = delta(calls_before, await server_calls(metrics_address, namespace))
            baseline.load = load_average()
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print(f"  {baseline.name}: {baseline.rate:,.0f} events/s, {baseline.calls_total:,} calls")

    report(arguments, phase, baseline, total, len(loans), len(with_case))
    if profile:
        print("\nprofile of this tree's processor (py-spy, busy samples):")
        print("\n".join(["  self:", *profile["self"], "  inclusive:", *profile["inclusive"]]))


def report(
    arguments: argparse.Namespace,
    phase: Phase,
    baseline: Phase,
    total: int,
    loans: int,
    with_case: int,
) -> None:
    expected_signals = total * with_case // loans

    def row(p: Phase) -> str:
        per_event = p.calls_total / p.events if p.events else float("nan")
        return (
            f"{p.events:>9,} events in {p.seconds:6.1f} s = {p.rate:>7,.0f} events/s; "
            f"processor CPU {p.cpu_per_event_ms:.3f} ms/event "
            f"(= {1000 / p.cpu_per_event_ms if p.cpu_per_event_ms else float('nan'):,.0f} "
            f"events/s per core); "
            f"Temporal calls {p.calls_total:,} ({per_event:.3f}/event: "
            f"{', '.join(f'{k} {v:,}' for k, v in sorted(p.calls.items()))}); "
            f"CPU s {p.cpu_seconds}; load {p.load}"
        )

    print_table(
        "Payment ingestion (isolated embedded stack, no worker)",
        [
            ("command", " ".join(["python -m bench.payments", *sys.argv[1:]])),
            ("workload", f"{total:,} payments, {loans:,} loans, {with_case:,} with a case "
                         f"(~{expected_signals:,} payments for them: one call each expected)"),
            (phase.name, row(phase)),
            ("  its own counters", str(phase.own_count)),
            (baseline.name, row(baseline)),
        ],
    )  # fmt: skip
    path = write_result(
        "payments",
        {
            "arguments": vars(arguments),
            "workload": {"payments": total, "loans": loans, "with_case": with_case},
            "expected_signals": expected_signals,
            "phases": [
                asdict(phase) | {"rate": phase.rate},
                asdict(baseline) | {"rate": baseline.rate},
            ],
        },
    )
    print(f"\nresult: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--loans", type=int, default=100_000)
    parser.add_argument("--open-share", type=float, default=0.01)
    parser.add_argument("--baseline", default="main", help="git revision to compare with")
    parser.add_argument(
        "--baseline-seconds",
        type=float,
        default=120.0,
        help="how long the baseline reads (it is measured over this window)",
    )
    parser.add_argument("--batch-size", type=int, help="streams.batch_size (both revisions)")
    parser.add_argument("--keep", action="store_true", help="keep the stack's data dir")
    parser.add_argument("--profile", action="store_true", help="py-spy this tree's processor")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
