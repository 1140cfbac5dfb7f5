"""``accord simulate``: play core banking and a portfolio of borrowers against a running stack.

The stack is left as it was found: no component is stopped, restarted or reconfigured. The
simulation's compressed-time policy is registered as a portfolio of its own (``sim-<scale>``,
a file in the stack's policy directory) and only its loans carry that portfolio, so ordinary
cases keep the default policy on the real clock.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from cli.reach import run_against_stack
from schemas.events import ProductType

if TYPE_CHECKING:
    from settings import Settings
    from simulate.engine import CaseRecord
    from simulate.portfolio import SimulatedLoan
    from simulate.timescale import CompressedPolicy


def _products(text: str | None) -> list[ProductType] | None:
    if not text:
        return None
    try:
        return [ProductType(part.strip()) for part in text.split(",") if part.strip()]
    except ValueError as error:
        known = ", ".join(p.value for p in ProductType)
        raise click.BadParameter(f"{error} (known: {known})") from None


def _seconds_per_day(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise click.BadParameter(f"{text!r} is not a number") from None
    if value <= 0:
        raise click.BadParameter("must be > 0")
    return value


@click.command()
@click.option(
    "--loans",
    "loan_count",
    type=click.IntRange(1, 1_000_000),
    default=200,
    show_default=True,
    help="Loans in the synthetic portfolio.",
)
@click.option(
    "--mix",
    default=None,
    help="Behaviour profile weights, e.g. cooperative=40,unresponsive=10 "
    "(unnamed profiles: 0). Default: a realistic book.",
)
@click.option(
    "--products",
    default=None,
    help="Comma-separated products (default: all, credit cards and personal loans most common).",
)
@click.option("--currency", default="CNY", show_default=True)
@click.option(
    "--seed",
    type=int,
    default=1,
    show_default=True,
    help="Same seed, same portfolio and same borrower choices.",
)
@click.option(
    "--seconds-per-day",
    default="1",
    show_default=True,
    help="Real seconds per policy day: 1 plays a 12-month plan in about six minutes.",
)
@click.option(
    "--duration",
    type=click.FloatRange(1),
    default=600.0,
    show_default=True,
    help="Stop after this many seconds, whatever is still open.",
)
@click.option(
    "--rate",
    type=click.FloatRange(0.1),
    default=None,
    help="Overdue events per second (default: as fast as Kafka takes them). On compressed time "
    "a worker backlog turns into policy days (cases miss deadlines): a 2-core machine keeps up "
    "with about 2 a second.",
)
@click.option(
    "--audit/--no-audit",
    default=True,
    show_default=True,
    help="Read every case's audit at the end (contacts blocked by the rules).",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the report goes (default: <data_dir>/simulate).",
)
def simulate(
    loan_count: int,
    mix: str | None,
    products: str | None,
    currency: str,
    seed: int,
    seconds_per_day: str,
    duration: float,
    rate: float | None,
    audit: bool,
    out_dir: Path | None,
) -> None:  # fmt: skip
    """Play core banking and the borrowers against the running stack and report the outcome."""
    from decisions.policy import PolicyError
    from settings import get_settings
    from simulate.portfolio import generate_portfolio
    from simulate.profiles import MixError, parse_mix
    from simulate.timescale import time_scale_for, write_compressed_policy

    console = Console()
    settings = get_settings()
    try:
        weights = parse_mix(mix)
    except MixError as error:
        raise click.BadParameter(str(error), param_hint="--mix") from None
    started = datetime.now(UTC)
    out = out_dir or settings.data_dir / "simulate"
    scale = time_scale_for(_seconds_per_day(seconds_per_day))
    portfolio = f"sim-{scale}"
    try:
        policy = write_compressed_policy(
            settings.policy_file,
            settings.portfolio_policy_dir / f"{portfolio}.toml",
            _seconds_per_day(seconds_per_day),
        )
    except PolicyError as error:
        raise click.ClickException(str(error)) from None
    loans = generate_portfolio(
        loan_count,
        seed=seed,
        mix=weights,
        as_of=started,
        loan_prefix=f"S{seed}-{started:%y%m%d%H%M%S}",
        currency=currency,  # type: ignore[arg-type]
        products=_products(products),
        portfolio=portfolio,
    )
    console.print(
        f"{loan_count} loans in portfolio {portfolio}, seed {seed}, policy {policy.version} "
        f"(time scale {policy.time_scale}x), Temporal {settings.temporal.address}, "
        f"Kafka {settings.kafka.bootstrap_servers}"
    )
    records = run_against_stack(
        settings, _run(settings, loans, policy, duration, rate, audit, console)
    )
    _report(records, policy, out, started, console, settings)


async def _run(
    settings: Settings,
    loans: list[SimulatedLoan],
    policy: CompressedPolicy,
    duration: float,
    rate: float | None,
    audit: bool,
    console: Console,
) -> list[CaseRecord]:
    from simulate.engine import Simulation, SimulationConfig

    with Progress(
        TextColumn("{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),  # from each bar's recent pace: cases close at their own rate
        console=console,
    ) as progress:
        tasks = {
            name: progress.add_task(name, total=len(loans))
            for name in ("published", "opened", "closed")
        }
        simulation = Simulation(
            settings,
            loans,
            SimulationConfig(
                time_scale=policy.time_scale,
                grace_days=policy.grace_days,
                duration_seconds=duration,
                publish_rate=rate,
                audit=audit,
            ),
            on_progress=lambda name, value: (
                progress.update(tasks[name], completed=value) if name in tasks else None
            ),
        )
        return await simulation.run()


def _report(
    records: list[CaseRecord],
    policy: CompressedPolicy,
    out: Path,
    started: datetime,
    console: Console,
    settings: Settings,
) -> None:
    from simulate.report import CaseLinks, html_report, print_summary, summarise

    summary = summarise(records)
    print_summary(summary, console)
    stamp = f"{started:%Y%m%dT%H%M%S}"
    notes = [
        f"started {started:%Y-%m-%d %H:%M:%S} UTC, policy {policy.version}, "
        f"time scale {policy.time_scale}x",
        f"Temporal UI: http://{settings.temporal.address.rsplit(':', 1)[0]}:"
        f"{settings.temporal.ui_port} (workflow ids case-S…)",
    ]
    out.mkdir(parents=True, exist_ok=True)
    page = out / f"simulation-{stamp}.html"
    links = CaseLinks(
        desk_url=settings.desk.url,
        temporal_ui_url=settings.temporal_ui_url,
        namespace=settings.temporal.namespace,
    )
    page.write_text(html_report(summary, "Accord portfolio simulation", notes, records, links))
    data = out / f"simulation-{stamp}.json"
    data.write_text(json.dumps(summary.to_json(), indent=2))
    console.print(f"report: {page}\nsummary: {data}")
