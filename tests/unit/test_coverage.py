"""Coverage: borrowers in temporary hardship who can pay something get a plan (issue 11: at most
10 % without an option), on several generated books, not one lucky seed."""

from __future__ import annotations

import pytest

from bench.coverage import TARGET_TEMPORARY, lean, measure, portfolio
from decisions.policy import load_policy
from simulate.profiles import Profile

pytestmark = pytest.mark.unit

POLICY = load_policy()


@pytest.mark.parametrize("seed", [101, 202, 303, 404])
def test_temporary_hardship_with_disposable_income_almost_always_gets_a_plan(seed: int):
    loans = portfolio(120, seed, mix={Profile.TEMPORARY_HARDSHIP: 1})
    for book in (loans, lean(loans, seed)):
        coverage = measure(book, POLICY)
        assert sum(coverage.counted.values()) > 90  # most of them have disposable income
        assert coverage.share("temporary") <= TARGET_TEMPORARY, coverage.reasons


def test_every_borrower_without_an_option_has_reasons():
    coverage = measure(lean(portfolio(200, 7), 7), POLICY)
    assert sum(coverage.without_option.values()) == sum(coverage.reasons.values()) > 0
    assert all(": " in reason and not reason.endswith(": ") for reason in coverage.reasons)
