"""Plan coverage: of the borrowers who declared a positive disposable income, who is offered no
plan at all, by tier and hardship kind, and why (``decisions.plans``; no stack needed).

    .venv/bin/python -m bench.coverage                  # 2,000 loans x seeds 1 2 3
    .venv/bin/python -m bench.coverage --loans 300 --seeds 7

Two books, both from the simulator's portfolio generator (``simulate/portfolio.py``, the
default mix): *portfolio* as generated, and *lean*: the same loans and declarations, except
that each borrower's income is lowered so that the affordable instalment is a uniformly drawn
5-100 % of the contractual instalment (a stricter book than the generator's, whose budgets are
built to fit the plans each profile is meant to take). The case is assessed as if the borrower
answered (no sign of unwillingness), and proposed under the bundled default policy.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from decisions.plans import propose
from decisions.policy import Policy, load_policy
from decisions.tiering import assess
from schemas.assessment import CreditRecord, Engagement, FinancialProfile
from schemas.money import quantize
from simulate.portfolio import AFFORDABLE_SHARE, SimulatedLoan, generate_portfolio
from simulate.profiles import DEFAULT_MIX, Profile

AS_OF = datetime(2026, 3, 1, 9, tzinfo=UTC)
ANSWERED = Engagement(contact_attempts=1, conversations=1)
TARGET_TEMPORARY = Decimal("0.10")
"""Issue 11: at most 10 % of borrowers in temporary hardship with a positive disposable income
get no option."""


@dataclass
class Coverage:
    """Borrowers with positive disposable income, and those of them offered nothing."""

    counted: Counter[tuple[str, str]] = field(default_factory=Counter)
    without_option: Counter[tuple[str, str]] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    """Each no-option case's reasons (``PlanProposal.no_option_reasons``), joined, by count."""
    seconds: list[float] = field(default_factory=list)

    def share(self, hardship: str | None = None, tier: str | None = None) -> Decimal:
        keys = [
            k
            for k in self.counted
            if (hardship is None or k[1] == hardship) and (tier is None or k[0] == tier)
        ]
        counted = sum(self.counted[k] for k in keys)
        missing = sum(self.without_option[k] for k in keys)
        return Decimal(missing) / counted if counted else Decimal(0)

    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "tier": tier,
                "hardship": hardship,
                "borrowers": self.counted[(tier, hardship)],
                "no_option": self.without_option[(tier, hardship)],
                "share": f"{self.share(hardship, tier):.3f}",
            }
            for tier, hardship in sorted(self.counted)
        ]


def measure(loans: Iterable[SimulatedLoan], policy: Policy) -> Coverage:
    coverage = Coverage()
    for loan in loans:
        if loan.finances is None:
            continue
        started = time.perf_counter()
        assessment = assess(loan.overdue, loan.finances, CreditRecord(), ANSWERED, policy)
        affordability = assessment.affordability
        assert affordability is not None
        if affordability.disposable_income <= 0:
            continue
        first_due = AS_OF.date() + timedelta(days=policy.durations.first_instalment_days)
        proposal = propose(loan.overdue, assessment, policy, first_due)
        coverage.seconds.append(time.perf_counter() - started)
        key = (assessment.tier.value, affordability.hardship.value)
        coverage.counted[key] += 1
        if not proposal.offered:
            coverage.without_option[key] += 1
            coverage.reasons[f"{key[0]}/{key[1]}: {'+'.join(proposal.no_option_reasons)}"] += 1
    return coverage


def portfolio(count: int, seed: int, mix: dict[Profile, int] | None = None) -> list[SimulatedLoan]:
    return generate_portfolio(count, seed=seed, mix=mix or dict(DEFAULT_MIX), as_of=AS_OF)


def lean(loans: Sequence[SimulatedLoan], seed: int) -> list[SimulatedLoan]:
    """The same loans; each declared income lowered so the affordable instalment is 5-100 % of
    the contractual one."""
    rng = random.Random(seed)
    leaner = []
    for loan in loans:
        finances = loan.finances
        if finances is not None:
            instalment = loan.overdue.contractual_instalment
            affordable = instalment * Decimal(rng.randint(5, 100)) / 100
            income = quantize(
                finances.essential_expenses
                + finances.other_debt_payments
                + affordable / AFFORDABLE_SHARE,
                finances.currency,
            )
            finances = FinancialProfile.model_validate(
                {**finances.model_dump(), "monthly_income": income}
            )
        leaner.append(SimulatedLoan(loan.overdue, loan.profile, finances, loan.behaviour_seed))
    return leaner


def _print(name: str, coverage: Coverage) -> None:
    print(f"\n{name}: borrowers with positive disposable income offered no plan")
    print(f"  {'tier':<10} {'hardship':<10} {'borrowers':>9} {'no option':>9} {'share':>7}")
    for row in coverage.rows():
        print(
            f"  {row['tier']:<10} {row['hardship']:<10} {row['borrowers']:>9} "
            f"{row['no_option']:>9} {Decimal(row['share']) * 100:>6.1f}%"
        )
    print(f"  temporary hardship, all tiers: {coverage.share('temporary') * 100:.1f} %")
    print("  reasons of the no-option cases, by count:")
    for reason, count in coverage.reasons.most_common():
        print(f"    {count:>5}  {reason}")
    timings = sorted(coverage.seconds)
    if timings:
        print(
            f"  assess + propose: median {timings[len(timings) // 2] * 1000:.1f} ms, "
            f"max {timings[-1] * 1000:.1f} ms over {len(timings)}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    from bench.common import load_average, write_result

    parser = argparse.ArgumentParser(prog="python -m bench.coverage", description=__doc__)
    parser.add_argument("--loans", type=int, default=2000, help="loans per seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args(argv)
    policy = load_policy()
    command = "python -m bench.coverage " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"{command}\npolicy {policy.version}; load average before: {load_average()}")
    books: dict[str, Coverage] = {"portfolio": Coverage(), "lean": Coverage()}
    for seed in args.seeds:
        loans = portfolio(args.loans, seed)
        for name, book in (("portfolio", loans), ("lean", lean(loans, seed))):
            measured = measure(book, policy)
            books[name].counted.update(measured.counted)
            books[name].without_option.update(measured.without_option)
            books[name].reasons.update(measured.reasons)
            books[name].seconds.extend(measured.seconds)
    for name, coverage in books.items():
        _print(name, coverage)
    after = load_average()
    print(f"\nload average after: {after}")
    path = write_result(
        "coverage",
        {
            "command": command,
            "policy_version": policy.version,
            "load_average_after": after,
            "books": {
                name: {
                    "rows": coverage.rows(),
                    "temporary_share": f"{coverage.share('temporary'):.4f}",
                    "reasons": dict(coverage.reasons.most_common()),
                }
                for name, coverage in books.items()
            },
        },
    )
    print(f"written: {path}")
    met = all(c.share("temporary") <= TARGET_TEMPORARY for c in books.values())
    print(
        f"target (temporary hardship <= {TARGET_TEMPORARY:.0%} without option): "
        f"{'met' if met else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
