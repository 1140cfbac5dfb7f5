"""Lifecycle benchmark: a simulated portfolio through the whole case lifecycle on the real
stack (Kafka, Temporal dev server, ``accord stream``, the simulated bank's worker), on the
compressed policy.

Prints and records: cases completed per second, outcomes, workflow-task latency p50/p99 (the
worker SDK's own histograms), worker CPU and RSS. Usage:
  .venv/bin/python -m bench.lifecycle [--loans 2000] [--duration 600] [--rate 2] [--mix ...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from datetime import UTC, datetime
from decimal import Decimal

from bench.common import (
    ProcessWatch,
    PySpy,
    histogram_quantiles,
    load_average,
    print_table,
    progress_printer,
    scrape,
    simulation_stack,
    task_timeouts,
    write_result,
)
from clients import connect_temporal
from schemas.case import CaseStage
from settings import Settings
from simulate.bank_process import BANK
from simulate.engine import Simulation, SimulationConfig
from simulate.portfolio import generate_portfolio
from simulate.profiles import parse_mix
from simulate.report import summarise
from stack.supervision import Supervisord

LATENCY_METRICS = {
    "workflow_task_execution_ms": "temporal_workflow_task_execution_latency",
    "workflow_task_schedule_to_start_ms": "temporal_workflow_task_schedule_to_start_latency",
    "workflow_task_replay_ms": "temporal_workflow_task_replay_latency",
    "activity_execution_ms": "temporal_activity_execution_latency",
}


async def main(arguments: argparse.Namespace) -> None:
    started = datetime.now(UTC)
    loads = {"start": load_average()}
    seconds_per_day = Decimal(arguments.seconds_per_day)
    async with simulation_stack(
        "lifecycle", keep=arguments.keep, seconds_per_policy_day=seconds_per_day
    ) as running:
        settings = running.settings
        loans = generate_portfolio(
            arguments.loans,
            seed=arguments.seed,
            mix=parse_mix(arguments.mix),
            as_of=started,
            loan_prefix=f"LC{started:%H%M%S}",
        )
        simulation = Simulation(
            settings,
            loans,
            SimulationConfig(
                time_scale=running.policy.time_scale,
                grace_days=running.policy.grace_days,
                duration_seconds=arguments.duration,
                publish_rate=arguments.rate or None,
                audit=False,
                final_views=False,
                idle_seconds=arguments.idle_seconds,
            ),
            on_progress=progress_printer(every_seconds=5, total=arguments.loans),
        )
        supervisor = Supervisord(settings.data_dir.resolve())
        others = {name: supervisor.read_pid(name) for name in ("temporal", "stream")}
        with PySpy(running.bank_pid, "lifecycle-worker", enabled=arguments.profile) as spy:
            async with contextlib.AsyncExitStack() as watches:
                watch = await watches.enter_async_context(ProcessWatch(running.bank_pid))
                other_watches = {
                    name: await watches.enter_async_context(ProcessWatch(record.pid))
                    for name, record in others.items()
                    if record is not None
                }
                began = time.monotonic()
                records = await simulation.run()
                elapsed = time.monotonic() - began
        loads["end"] = load_average()
        timeouts = task_timeouts(supervisor.log_file(BANK))
        metrics = await scrape(running.metrics_address)
        open_by_stage = await stage_counts(settings, loans[0].overdue.loan_id.rsplit("-", 1)[0])
    latency = {
        name: histogram_quantiles(metrics, metric, (0.5, 0.99))
        for name, metric in LATENCY_METRICS.items()
    }
    summary = summarise(records)
    closed = summary.closed
    rows = [
        ("loans / opened / closed", f"{summary.cases} / {summary.opened} / {closed}"),
        ("time scale (policy s per real s)", f"{running.policy.time_scale}"),
        ("run seconds", f"{elapsed:.1f}"),
        ("overdue events / s (publish rate)", arguments.rate or "all at once"),
        ("cases completed / s", f"{closed / elapsed:.2f}"),
        ("agreements signed", str(len(summary.days_to_agreement))),
        ("still open by stage", open_by_stage),
        ("median policy days to agreement", summary.days_to_agreement_median),
        ("closing reasons", dict(summary.closing_reasons.most_common(8))),
    ]  # fmt: skip
    for profile, outcomes in summary.outcomes_by_profile.items():
        rows.append((f"  {profile}", dict(outcomes.most_common())))
    for name, values in latency.items():
        rows.append((f"{name} p50/p99 (n)", f"{values['p50']} / {values['p99']}  "
                                             f"({int(values['count'] or 0)})"))  # fmt: skip
    rows.append(("workflow tasks timed out (worker log)", timeouts))
    rows.append(("worker (bank) cpu / rss", str(watch.summary())))
    for name, other in other_watches.items():
        rows.append((f"{name} cpu / rss", str(other.summary())))
    rows.append(("load average start / end", f"{loads['start']} / {loads['end']}"))
    print_table("Lifecycle (isolated embedded stack)", rows)
    path = write_result(
        "lifecycle",
        {
            "loans": arguments.loans,
            "mix": arguments.mix or "default",
            "time_scale": running.policy.time_scale,
            "publish_rate": arguments.rate or None,
            "seconds": round(elapsed, 1),
            "cases_completed_per_second": round(closed / elapsed, 3),
            "summary": summary.to_json(),
            "open_by_stage": open_by_stage,
            "latency": latency,
            "workflow_task_timeouts": timeouts,
            "worker": watch.summary(),
            "servers": {name: other.summary() for name, other in other_watches.items()},
            "load_average": loads,
            "worker_profile": spy.summary(),
        },
    )
    if spy.enabled:
        print("\nworker profile (py-spy, busy samples, inclusive):")
        print("\n".join(spy.summary(30)["inclusive"]))
    print(f"\nresult: {path}")


async def stage_counts(settings: Settings, loan_prefix: str) -> dict[str, int]:
    """Open cases per stage from the search attributes: a handful of counts, not a query per
    case (which a loaded server answers slowly)."""
    client = await connect_temporal(settings)
    counts = {}
    for stage in CaseStage:
        query = (
            f"ExecutionStatus = 'Running' AND CaseStage = '{stage.value}' "
            f"AND WorkflowId STARTS_WITH 'case-{loan_prefix}-'"
        )
        found = (await client.count_workflows(query)).count
        if found:
            counts[stage.value] = found
    return counts


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loans", type=int, default=2_000)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds, at most")
    parser.add_argument("--mix", default=None, help="as `accord simulate --mix`")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--rate", type=float, default=2.0,
        help="overdue events per second (0: all at once). On compressed time a backlog turns "
             "into policy days: a case that waits 14 s for the worker misses a 14-day deadline",
    )  # fmt: skip
    parser.add_argument(
        "--seconds-per-day", default="1",
        help="real seconds per policy day (1: a policy day per second, time scale 86,400)",
    )  # fmt: skip
    parser.add_argument(
        "--idle-seconds", type=float, default=None,
        help="stop when no case signed or closed for this long",
    )  # fmt: skip
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--profile", action="store_true", help="py-spy the worker")
    asyncio.run(main(parser.parse_args()))
