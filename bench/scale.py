"""Scale benchmark: many open cases asleep on their instalment timers, then many timers falling
due at once.

1. ``--cases`` cooperative borrowers negotiate and sign on compressed policy time
   (``--seconds-per-day``), on the real stack (Kafka, Temporal dev server, ``accord stream``, the
   simulated bank's worker with ``--cache`` cached workflows). The benchmark's policy pushes the
   first instalment and the periodic re-assessment ``ASLEEP_DAYS`` policy days out, so every
   signed case then sleeps on one durable timer for the rest of the run (hours of real time)
   instead of moving on to its instalments. Creation rate = signed cases/s. While cases are
   created, worker RSS is sampled against the number of open and asleep cases.
2. Server database size and worker RSS with every case asleep.
3. ``--due`` of them get a durable timer falling due at the same instant, and the drain rate is
   how fast the worker works through them. The timer is an operator pause ``until`` that
   instant (on each case's own clock); when it fires the case publishes ``resumed`` and goes back
   to sleep on its instalment. The drain is timed from the instant to the last ``resumed`` event
   on ``case.events.v1``.

Usage: .venv/bin/python -m bench.scale [--cases 100000] [--due 10000] [--cache 800]
(100,000 cases take hours on a 2-core machine: ``--cases 3000 --due 1000`` for a quick look.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from temporalio.client import (
    Client,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.service import RPCError

from bench.common import (
    ProcessWatch,
    histogram_quantiles,
    load_average,
    print_table,
    progress_printer,
    sample_process,
    scrape,
    simulation_stack,
    task_timeouts,
    write_result,
)
from clients import connect_temporal, kafka_client_options
from desk.calls import sign_for
from engine.actions import Pause
from schemas.staff import Actor, StaffRole
from settings import Settings, TemporalSettings
from simulate.bank_process import BANK
from simulate.engine import CaseRecord, Simulation, SimulationConfig, case_id_of, read_from_now
from simulate.portfolio import generate_portfolio
from simulate.profiles import parse_mix
from simulate.timescale import policy_now
from stack.processes import ProcessSupervisor
from staff.keys import signing_key
from workflows.handle import CaseHandle

STAFF_ID = "ops-bench"
ASLEEP_DAYS = 3650
"""Policy days from signature to the first instalment (and to the first re-assessment)."""
ASLEEP_DURATIONS = {"first_instalment_days": ASLEEP_DAYS, "reassessment_interval_days": ASLEEP_DAYS}


def db_size_mib(data_dir: Path) -> float:
    files = (data_dir / "temporal").glob("temporal.db*")  # the db, its WAL and shared memory
    return round(sum(f.stat().st_size for f in files) / 2**20, 1)


async def count(client: Client, query: str) -> int:
    return (await client.count_workflows(query)).count


@dataclass
class RssSampler:
    """Worker RSS against the number of cases, every ``every`` seconds while cases are created."""

    pid: int
    simulation: Simulation
    every: float
    samples: list[dict[str, Any]] = field(default_factory=list)
    _began: float = field(default_factory=time.monotonic)

    def sample(self) -> dict[str, Any]:
        simulation = self.simulation
        closed = simulation.closed
        point = {
            "seconds": round(time.monotonic() - self._began, 1),
            "opened": simulation.opened,
            "open": simulation.opened - closed,
            "signed_asleep": len(simulation.signed_or_closed) - closed,
            "closed": closed,
            "rss_mib": round(sample_process(self.pid).rss_bytes / 2**20, 1),
        }
        self.samples.append(point)
        return point

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            with contextlib.suppress(OSError):
                self.sample()


def policy_instant(record: CaseRecord, instant: datetime) -> datetime:
    """``instant`` (server time) on the case's own clock, which a pause ``until`` is read on."""
    assert record.anchor is not None and record.time_scale is not None
    return policy_now(record.anchor, instant, record.time_scale)


async def pause_until(
    client: Client,
    records: list[CaseRecord],
    instant: datetime,
    concurrency: int,
    settings: Settings,
) -> set[str]:
    """Pause each case until ``instant``, ``concurrency`` at a time; the ids of the cases that
    accepted. A pause on an evicted case is a replay, so a busy worker can time the task out
    ("Workflow Task in failed state"): such a pause is tried again. Cases not reached before
    the instant are left out (their pause would be in the past)."""
    slots = asyncio.Semaphore(concurrency)
    accepted: set[str] = set()
    handles = {r.case_id: CaseHandle(client, r.case_id) for r in records}

    async def one(record: CaseRecord) -> None:
        request = sign_for(
            Pause(staff_id=STAFF_ID, until=policy_instant(record, instant)),
            Actor(staff_id=STAFF_ID, role=StaffRole.ADMINISTRATOR),
            record.case_id,
            signing_key(settings),
            timedelta(minutes=5),
        )
        async with slots:
            for attempt in range(4):
                if (instant - datetime.now(UTC)).total_seconds() < 2:
                    return  # too late for this instant
                try:
                    await handles[record.case_id].act(request)
                    accepted.add(record.case_id)
                    return
                except WorkflowUpdateFailedError as error:
                    print(f"  pause refused for {record.case_id}: {error.cause or error}")
                    return
                except (RPCError, WorkflowUpdateRPCTimeoutOrCancelledError) as error:
                    if attempt == 3:
                        print(f"  pause failed for {record.case_id}: {error}")
                    else:
                        await asyncio.sleep(2**attempt)  # the task's retry, not a sync point

    await asyncio.gather(*(one(record) for record in records))
    return accepted


class ResumedWatch:
    """When each case published ``resumed`` on ``case.events.v1`` (first time, from the moment
    the watch starts)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.resumed_at: dict[str, datetime] = {}
        self._arrived = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ResumedWatch:
        options = kafka_client_options(self.settings.kafka)
        self._consumer = AIOKafkaConsumer(group_id=None, enable_auto_commit=False, **options)
        await self._consumer.start()
        # Positions fixed before the first pause is sent.
        await read_from_now(self._consumer, self.settings.kafka.topics.case_events)
        self._task = asyncio.create_task(self._listen())
        return self

    async def _listen(self) -> None:
        assert self._consumer is not None
        async for message in self._consumer:
            value = message.value or b""
            if b'"kind":"resumed"' not in value:
                continue
            self.resumed_at.setdefault(case_id_of(value), datetime.now(UTC))
            self._arrived.set()

    async def wait_for(self, case_ids: set[str], seconds: float) -> bool:
        """True once every case in ``case_ids`` resumed; False after ``seconds``."""
        deadline = time.monotonic() + seconds
        while not case_ids <= self.resumed_at.keys():
            self._arrived.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._arrived.wait()
        return True

    async def __aexit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()


async def main(arguments: argparse.Namespace) -> None:
    started = datetime.now(UTC)
    loads = {"start": load_average()}
    seconds_per_day = Decimal(arguments.seconds_per_day)
    async with simulation_stack(
        "scale",
        keep=arguments.keep,
        seconds_per_policy_day=seconds_per_day,
        durations=ASLEEP_DURATIONS,
        policy_tag="asleep",
        temporal={"max_cached_workflows": arguments.cache},
    ) as running:
        settings = running.settings
        client = await connect_temporal(settings)
        asleep_hours = ASLEEP_DAYS * float(seconds_per_day) / 3600
        print(
            f"  time scale {running.policy.time_scale}: a signed case sleeps {asleep_hours:.1f} h"
        )
        loans = generate_portfolio(
            arguments.cases,
            seed=3,
            mix=parse_mix("cooperative=1"),
            as_of=started,
            loan_prefix=f"SC{started:%H%M%S}",
        )
        simulation = Simulation(
            settings,
            loans,
            SimulationConfig(
                time_scale=running.policy.time_scale,
                grace_days=running.policy.grace_days,
                duration_seconds=arguments.max_seconds,
                publish_rate=arguments.rate or None,
                audit=False,
                until_signed=True,
                borrowers_pay=False,
                final_views=False,
                idle_seconds=arguments.idle_seconds,
            ),
            on_progress=progress_printer(every_seconds=10, total=arguments.cases),
        )
        bank_log = ProcessSupervisor(settings.data_dir.resolve()).log_file(BANK)
        sampler = RssSampler(running.bank_pid, simulation, arguments.sample_seconds)
        sampler.sample()
        async with ProcessWatch(running.bank_pid) as creation_watch:
            sampling = asyncio.create_task(sampler.run())
            began = time.monotonic()
            records = await simulation.run()
            creation_seconds = time.monotonic() - began
            sampling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampling
        loads["created"] = load_average()
        timeouts_created = task_timeouts(bank_log)
        signed = [r for r in records if r.signed_at is not None and r.outcome is None]
        await asyncio.sleep(5)  # the last cases finish their tasks and fall asleep
        asleep = await count(client, "CaseStage = 'track' AND ExecutionStatus = 'Running'")
        open_cases = await count(client, "ExecutionStatus = 'Running'")
        db_mib = db_size_mib(settings.data_dir)
        rss_asleep = sampler.sample()["rss_mib"]
        print(f"  {asleep} cases asleep in track ({open_cases} open), db {db_mib} MiB, "
              f"worker rss {rss_asleep} MiB")  # fmt: skip

        due = [r for r in signed if r.anchor is not None][: arguments.due]
        # Time to send every pause before the instant: a pause on an evicted case is a replay
        # (a few per second on this machine when most of the cache is cold).
        lead = max(30.0, len(due) / arguments.pause_rate)
        instant = datetime.fromtimestamp(math.ceil(time.time() + lead), UTC)
        print(f"  pausing {len(due)} cases until {instant:%H:%M:%S} (in {lead:.0f}s)")
        async with ResumedWatch(settings) as resumed:
            sent_began = time.monotonic()
            accepted = await pause_until(
                client, due, instant, arguments.pause_concurrency, settings
            )
            sending_seconds = time.monotonic() - sent_began
            if len(accepted) < len(due):
                print(f"  warning: {len(accepted)} of {len(due)} paused before the instant")
            timeouts_paused = task_timeouts(bank_log)
            await asyncio.sleep(max(0.0, (instant - datetime.now(UTC)).total_seconds()))
            async with ProcessWatch(running.bank_pid) as drain_watch:
                complete = await resumed.wait_for(accepted, arguments.drain_timeout)
        paused = len(accepted)
        arrivals = sorted(t for case_id, t in resumed.resumed_at.items() if case_id in accepted)
        drained = len(arrivals)
        drain_seconds = max((arrivals[-1] - instant).total_seconds(), 1e-3) if arrivals else 0.0
        drain_rate = drained / drain_seconds if drain_seconds else 0.0
        if not complete:
            missing = sorted(accepted - resumed.resumed_at.keys())
            print(f"  warning: only {drained} of {paused} resumed within the drain timeout "
                  f"(not: {', '.join(missing[:5])}{' …' if len(missing) > 5 else ''})")  # fmt: skip
        loads["drained"] = load_average()
        timeouts_drained = task_timeouts(bank_log)
        await asyncio.sleep(2)
        asleep_after = await count(client, "CaseStage = 'track' AND ExecutionStatus = 'Running'")
        db_after = db_size_mib(settings.data_dir)
        rss_after = round(sample_process(running.bank_pid).rss_bytes / 2**20, 1)
        metrics = await scrape(running.metrics_address)
    latency = histogram_quantiles(metrics, "temporal_workflow_task_schedule_to_start_latency",
                                  (0.5, 0.99))  # fmt: skip
    curve = _rss_curve(sampler.samples)
    rows = [
        ("cases asleep on instalment timers", f"{asleep} of {arguments.cases} "
         f"({len(signed)} signed; others closed, e.g. no option offered)"),
        ("creation (negotiated + signed) cases/s",
         f"{len(signed) / creation_seconds:.1f}  ({creation_seconds:.0f}s; "
         f"load {loads['created']})"),
        ("server db size asleep / after drain", f"{db_mib} / {db_after} MiB"),
        ("worker rss asleep (cache bound)", f"{rss_asleep} MiB (max_cached_workflows "
         f"{arguments.cache}); during creation {creation_watch.summary()}"),
        ("worker rss by open cases (MiB)", curve),
        ("timers due at one instant", f"{paused} (pauses sent in {sending_seconds:.1f}s)"),
        ("drain", f"{drain_rate:.1f} timers/s ({drained} in {drain_seconds:.1f}s; "
         f"load {loads['drained']}); worker {drain_watch.summary()}"),
        ("asleep in track after the drain", f"{asleep_after} (rss {rss_after} MiB)"),
        ("workflow task schedule-to-start p50/p99 ms", f"{latency['p50']} / {latency['p99']}"),
        ("workflow tasks timed out: creation / pausing / drain",
         f"{timeouts_created} / {timeouts_paused - timeouts_created} / "
         f"{timeouts_drained - timeouts_paused}"),
    ]  # fmt: skip
    print_table("Scale (isolated embedded stack)", rows)
    path = write_result(
        "scale",
        {
            "cases": arguments.cases,
            "time_scale": running.policy.time_scale,
            "policy_version": running.policy.version,
            "signed": len(signed),
            "asleep_in_track": asleep,
            "open": open_cases,
            "creation_seconds": round(creation_seconds, 1),
            "creation_per_second": round(len(signed) / creation_seconds, 2),
            "db_mib_asleep": db_mib,
            "db_mib_after_drain": db_after,
            "worker_rss_mib_asleep": rss_asleep,
            "worker_rss_mib_after_drain": rss_after,
            "max_cached_workflows": arguments.cache,
            "worker_rss_by_cases": sampler.samples,
            "worker_during_creation": creation_watch.summary(),
            "timers_due": paused,
            "timers_drained": drained,
            "drain_seconds": round(drain_seconds, 2),
            "drain_per_second": round(drain_rate, 1),
            "worker_during_drain": drain_watch.summary(),
            "asleep_in_track_after_drain": asleep_after,
            "schedule_to_start_ms": latency,
            "workflow_task_timeouts": {
                "creation": timeouts_created,
                "pausing": timeouts_paused - timeouts_created,
                "drain": timeouts_drained - timeouts_paused,
            },
            "load_average": loads,
        },
    )
    print(f"\nresult: {path}")


def _rss_curve(samples: list[dict[str, Any]], points: int = 8) -> str:
    """A few (open cases → RSS) points, evenly spread over the samples."""
    if not samples:
        return "-"
    step = max(1, len(samples) // points)
    chosen = samples[::step]
    if chosen[-1] is not samples[-1]:
        chosen.append(samples[-1])
    return ", ".join(f"{s['open']}: {s['rss_mib']}" for s in chosen)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=10_000)
    parser.add_argument(
        "--cache",
        type=int,
        default=TemporalSettings().max_cached_workflows,
        help="worker max_cached_workflows (default: the settings default)",
    )
    parser.add_argument(
        "--rate", type=float, default=2.0,
        help="overdue events per second (0: all at once); keep rate x negotiation time (30-60 s "
             "here) below --cache, or negotiating cases are evicted and every task replays",
    )  # fmt: skip
    parser.add_argument(
        "--seconds-per-day", default="1",
        help=f"real seconds per policy day; a signed case sleeps {ASLEEP_DAYS} policy days",
    )  # fmt: skip
    parser.add_argument("--max-seconds", type=float, default=6 * 3600)
    parser.add_argument(
        "--idle-seconds", type=float, default=60.0,
        help="stop creating when no case signed or closed for this long",
    )  # fmt: skip
    parser.add_argument("--sample-seconds", type=float, default=10.0, help="RSS sampling period")
    parser.add_argument("--drain-timeout", type=float, default=600.0)
    parser.add_argument("--pause-concurrency", type=int, default=8, help="pauses in flight")
    parser.add_argument(
        "--pause-rate", type=float, default=2.0,
        help="pauses per second assumed when choosing the instant (lead = due / rate)",
    )  # fmt: skip
    parser.add_argument("--keep", action="store_true")
    asyncio.run(main(parser.parse_args()))
