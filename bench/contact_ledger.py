"""Contact checks per second the borrower's contact ledger sustains.

Three phases, one after the other:

* *pure* — ``decisions.contact_ledger.request_attempt`` in this process, no Temporal: the cost of
  the rules themselves on a ledger holding a realistic month of contacts.
* *one borrower* — ``--checks`` requests to one ledger workflow, ``--borrower-in-flight`` at a
  time, as the cases of one borrower make them: an update each (the check and the record in one
  handler), so they are serialised by that one workflow. Latency is the client's round trip per
  check. The server refuses more than 10 updates in flight to one workflow (its
  ``history.maxInFlightUpdates`` default) with ``RESOURCE_EXHAUSTED``, hence the default of 8.
* *many borrowers* — the same number of checks spread over ``--borrowers`` ledgers, ``--in-flight``
  at a time: what the server and one worker sustain for a portfolio.

Each request is a contact attempt of one of two loans on phone, SMS or e-mail, its clock
advancing ``--minutes-apart`` minutes per request, judged by the ``cn-2026`` pack: many are refused
once a cap binds, and a refusal is a check too (the counts are printed). A Temporal dev server
(no Kafka) in a fresh data dir and an in-process worker running only the ledger workflow.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.worker import Worker

from bench.common import (
    bench_stack,
    compile_bytecode,
    load_average,
    percentile,
    print_table,
    write_result,
)
from clients import connect_temporal
from decisions import contact_ledger as ledger
from decisions.contact_ledger import AttemptRequest, LedgerState
from decisions.policy import ContactRules, load_contact_rules
from schemas.contact import ContactChannel, ContactHolds
from worker import case_workflow_runner
from workflows.contact_ledger import ContactLedgerWorkflow
from workflows.ledger_handle import ContactLedgerHandle

START = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
ZONE = "Asia/Shanghai"
CHANNELS = (ContactChannel.PHONE, ContactChannel.SMS, ContactChannel.EMAIL)


def attempt(rules: ContactRules, borrower: str, index: int, minutes_apart: int) -> AttemptRequest:
    return AttemptRequest(
        attempt_id=f"{borrower}-a{index}",
        case_id=f"case-{borrower}-{index % 2}",
        debt=f"L-{borrower}-{index % 2}",
        channel=CHANNELS[index % len(CHANNELS)],
        at=START + timedelta(minutes=index * minutes_apart),
        time_zone=ZONE,
        holds=ContactHolds(),
        rules=rules,
    )


def pure(rules: ContactRules, checks: int, minutes_apart: int) -> dict[str, Any]:
    state = LedgerState(borrower_id="B-pure")
    requests = [attempt(rules, "B-pure", i, minutes_apart) for i in range(checks)]
    allowed: Counter[bool] = Counter()
    began = time.perf_counter()
    for request in requests:
        allowed[ledger.request_attempt(state, request).allowed] += 1
    seconds = time.perf_counter() - began
    return {
        "checks_per_second": round(checks / seconds),
        "granted": allowed[True],
        "refused": allowed[False],
        "entries_at_end": len(state.entries),
    }


async def through_workflows(
    handles: list[ContactLedgerHandle],
    rules: ContactRules,
    checks: int,
    in_flight: int,
    minutes_apart: int,
) -> dict[str, Any]:
    """``checks`` requests round-robin over ``handles``, ``in_flight`` at a time."""
    per_borrower = [
        [attempt(rules, h.borrower_id, i, minutes_apart) for i in range(checks // len(handles))]
        for h in handles
    ]
    work = [
        (handles[b], per_borrower[b][i])
        for i in range(checks // len(handles))
        for b in range(len(handles))
    ]
    latencies: list[float] = []
    allowed: Counter[bool] = Counter()
    next_index = 0

    async def client() -> None:
        nonlocal next_index
        while next_index < len(work):
            handle, request = work[next_index]
            next_index += 1
            sent = time.perf_counter()
            decision = await handle.request(request)
            latencies.append(time.perf_counter() - sent)
            allowed[decision.allowed] += 1

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(in_flight)))
    seconds = time.perf_counter() - began
    return {
        "checks": len(work),
        "checks_per_second": round(len(work) / seconds, 1),
        "latency_ms_p50": round(1000 * (percentile(latencies, 0.5) or 0), 1),
        "latency_ms_p99": round(1000 * (percentile(latencies, 0.99) or 0), 1),
        "granted": allowed[True],
        "refused": allowed[False],
    }


async def run(arguments: argparse.Namespace) -> dict[str, Any]:
    rules = load_contact_rules("cn-2026")
    result: dict[str, Any] = {"pure": pure(rules, arguments.pure_checks, arguments.minutes_apart)}
    print_table("pure ledger", list(result["pure"].items()))
    async with bench_stack("contact-ledger", components=["temporal"]) as settings:
        client = await connect_temporal(settings)
        task_queue = f"ledger-bench-{uuid.uuid4().hex[:8]}"
        async with Worker(
            client,
            task_queue=task_queue,
            workflows=[ContactLedgerWorkflow],
            workflow_runner=case_workflow_runner(),
        ):
            run_id = uuid.uuid4().hex[:6]

            def handles(count: int, tag: str) -> list[ContactLedgerHandle]:
                return [
                    ContactLedgerHandle(client, f"B-{run_id}-{tag}{n}", task_queue=task_queue)
                    for n in range(count)
                ]

            # Warm-up: the sandbox loads the workflow module once per worker.
            await through_workflows(handles(1, "w"), rules, 20, 1, arguments.minutes_apart)
            phases = (
                ("one_borrower", 1, arguments.borrower_in_flight),
                ("many_borrowers", arguments.borrowers, arguments.in_flight),
            )
            for phase, borrowers, in_flight in phases:
                result[phase] = await through_workflows(
                    handles(borrowers, phase[0]),
                    rules,
                    arguments.checks,
                    in_flight,
                    arguments.minutes_apart,
                )
                result[phase].update(borrowers=borrowers, in_flight=in_flight)
                print_table(phase.replace("_", " "), list(result[phase].items()))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checks", type=int, default=2_000)
    parser.add_argument("--pure-checks", type=int, default=20_000)
    parser.add_argument("--borrowers", type=int, default=50)
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--borrower-in-flight", type=int, default=8)
    parser.add_argument("--minutes-apart", type=int, default=7)
    arguments = parser.parse_args()
    compile_bytecode()
    load_before = load_average()
    began = time.monotonic()
    result = asyncio.run(run(arguments))
    result["load_average_before_after"] = [load_before, load_average()]
    result["seconds"] = round(time.monotonic() - began, 1)
    result["command"] = "python -m bench.contact_ledger " + " ".join(sys.argv[1:])
    print_table(
        "contact ledger",
        [(k, v) for k, v in result.items() if k not in ("pure", "one_borrower", "many_borrowers")],
    )
    print(f"  written to {write_result('contact-ledger', result)}")


if __name__ == "__main__":
    main()
