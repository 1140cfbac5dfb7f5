"""Scale benchmark: many open cases asleep on their instalment timers, then many timers falling
due at once.

1. ``--cases`` cooperative borrowers negotiate and sign (the real stack: Kafka, Temporal dev
   server, ``accord stream``, the simulated bank's worker with ``--cache`` cached workflows);
   each case then sleeps on its first instalment checkpoint. Creation rate = signed cases/s.
2. Server database size and worker RSS with every case asleep.
3. ``--due`` of them get a durable timer falling due at the same instant, and the drain rate is
   how fast the worker works through them. The timer is an operator pause ``until`` that
   instant (instalment checkpoints are a month away on an uncompressed clock); when it fires
   the case resumes (publishes ``resumed``) and goes back to sleep on its instalment.

Usage: .venv/bin/python -m bench.scale [--cases 100000] [--due 10000] [--cache 2000]
(100,000 cases take hours on a 2-core machine: ``--cases 5000 --due 2000`` for a quick look.)
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from temporalio.client import Client, WorkflowUpdateFailedError
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
    write_result,
)
from clients import connect_temporal
from decisions.policy import load_policy
from simulate.engine import Simulation, SimulationConfig
from simulate.portfolio import generate_portfolio
from simulate.profiles import parse_mix
from workflows.messages import Accepted, Pause

STAFF_ID = "ops-bench"


def db_size_mib(data_dir: Path) -> float:
    files = (data_dir / "temporal").glob("temporal.db*")  # the db, its WAL and shared memory
    return round(sum(f.stat().st_size for f in files) / 2**20, 1)


async def count(client: Client, query: str) -> int:
    return (await client.count_workflows(query)).count


async def until_none(client: Client, query: str) -> None:
    while True:
        if await count(client, query) == 0:
            return
        await asyncio.sleep(0.5)


async def pause_until(client: Client, case_ids: list[str], until: datetime) -> int:
    slots = asyncio.Semaphore(64)
    accepted = 0

    async def one(case_id: str) -> None:
        nonlocal accepted
        async with slots:
            try:
                await client.get_workflow_handle(case_id).execute_update(
                    "pause", Pause(staff_id=STAFF_ID, until=until), result_type=Accepted
                )
                accepted += 1
            except (WorkflowUpdateFailedError, RPCError) as error:
                print(f"  pause refused for {case_id}: {error}")

    await asyncio.gather(*(one(case_id) for case_id in case_ids))
    return accepted


async def main(arguments: argparse.Namespace) -> None:
    started = datetime.now(UTC)
    loads = {"start": load_average()}
    overrides = {"temporal": {"max_cached_workflows": arguments.cache}}
    async with simulation_stack("scale", keep=arguments.keep, **overrides) as running:
        settings = running.settings
        client = await connect_temporal(settings)
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
                time_scale=running.time_scale,
                grace_days=load_policy(settings.policy_file).durations.grace_days,
                duration_seconds=arguments.max_seconds,
                publish_rate=arguments.rate,
                audit=False,
                until_signed=True,
                borrowers_pay=False,
                idle_seconds=arguments.idle_seconds,
            ),
            on_progress=progress_printer(every_seconds=10, total=arguments.cases),
        )
        async with ProcessWatch(running.bank_pid) as creation_watch:
            began = time.monotonic()
            records = await simulation.run()
            creation_seconds = time.monotonic() - began
        loads["created"] = load_average()
        signed = [r for r in records if r.signed_at is not None and r.outcome is None]
        await asyncio.sleep(5)  # let the last tasks finish: the cases are asleep
        asleep = await count(client, "CaseStage = 'track' AND ExecutionStatus = 'Running'")
        open_cases = await count(client, "ExecutionStatus = 'Running'")
        db_mib = db_size_mib(settings.data_dir)
        rss_asleep = round(sample_process(running.bank_pid).rss_bytes / 2**20, 1)
        print(f"  {asleep} cases asleep in track ({open_cases} open), db {db_mib} MiB, "
              f"worker rss {rss_asleep} MiB")  # fmt: skip

        due = [r.case_id for r in signed][: arguments.due]
        lead = max(20.0, len(due) / 40)  # time to send every pause before the instant
        instant = datetime.fromtimestamp(math.ceil(time.time() + lead), UTC)
        sent_began = time.monotonic()
        paused = await pause_until(client, due, instant)
        sending_seconds = time.monotonic() - sent_began
        if datetime.now(UTC) >= instant:
            print("  warning: the instant passed before every pause was sent")
        still_due = f"NextCheckpointAt <= '{(instant + timedelta(seconds=1)).isoformat()}' " \
                    "AND ExecutionStatus = 'Running'"  # fmt: skip
        await asyncio.sleep(max(0.0, (instant - datetime.now(UTC)).total_seconds()))
        async with ProcessWatch(running.bank_pid) as drain_watch:
            await until_none(client, still_due)
            drained_at = datetime.now(UTC)
        drain_seconds = (drained_at - instant).total_seconds()
        loads["drained"] = load_average()
        db_after = db_size_mib(settings.data_dir)
        metrics = await scrape(running.metrics_address)
    latency = histogram_quantiles(metrics, "temporal_workflow_task_schedule_to_start_latency",
                                  (0.5, 0.99))  # fmt: skip
    rows = [
        ("cases asleep on instalment timers", f"{asleep} of {arguments.cases} "
         f"({len(signed)} signed; others closed, e.g. no option offered)"),
        ("creation (negotiated + signed) cases/s",
         f"{len(signed) / creation_seconds:.1f}  ({creation_seconds:.0f}s; "
         f"load {loads['created']})"),
        ("server db size asleep / after drain", f"{db_mib} / {db_after} MiB"),
        ("worker rss asleep (cache bound)", f"{rss_asleep} MiB (max_cached_workflows "
         f"{arguments.cache}); during creation {creation_watch.summary()}"),
        ("timers due at one instant", f"{paused} (pauses sent in {sending_seconds:.1f}s)"),
        ("drain", f"{paused / drain_seconds:.1f} timers/s ({drain_seconds:.1f}s; "
         f"load {loads['drained']}); worker {drain_watch.summary()}"),
        ("workflow task schedule-to-start p50/p99 ms", f"{latency['p50']} / {latency['p99']}"),
    ]  # fmt: skip
    print_table("Scale (isolated embedded stack)", rows)
    path = write_result(
        "scale",
        {
            "cases": arguments.cases,
            "signed": len(signed),
            "asleep_in_track": asleep,
            "open": open_cases,
            "creation_seconds": round(creation_seconds, 1),
            "creation_per_second": round(len(signed) / creation_seconds, 2),
            "db_mib_asleep": db_mib,
            "db_mib_after_drain": db_after,
            "worker_rss_mib_asleep": rss_asleep,
            "max_cached_workflows": arguments.cache,
            "worker_during_creation": creation_watch.summary(),
            "timers_due": paused,
            "drain_seconds": round(drain_seconds, 2),
            "drain_per_second": round(paused / drain_seconds, 1),
            "worker_during_drain": drain_watch.summary(),
            "schedule_to_start_ms": latency,
            "load_average": loads,
        },
    )
    print(f"\nresult: {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=10_000)
    parser.add_argument("--cache", type=int, default=2_000, help="worker max_cached_workflows")
    parser.add_argument("--rate", type=float, default=None, help="overdue events per second")
    parser.add_argument("--max-seconds", type=float, default=6 * 3600)
    parser.add_argument(
        "--idle-seconds", type=float, default=60.0,
        help="stop creating when no case signed or closed for this long (approvals lapse on "
             "real days)",
    )  # fmt: skip
    parser.add_argument("--keep", action="store_true")
    asyncio.run(main(parser.parse_args()))
