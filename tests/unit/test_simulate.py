"""The simulator's pure parts: portfolio, mix, borrower decisions, compressed policy, report."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from decisions.plans import issue_agreement, propose
from decisions.policy import PolicyError, load_policy
from decisions.tiering import assess
from schemas.assessment import CreditRecord, Engagement
from schemas.case import CaseStage, CaseView, TrackedInstalment
from schemas.contact import ContactAttempt, ContactChannel, ContactOutcome
from schemas.events import ProductType
from schemas.plan import Agreement
from simulate import borrowers as b
from simulate.engine import CaseRecord, is_premature, server_time_of
from simulate.portfolio import SimulatedLoan, generate_portfolio
from simulate.profiles import DEFAULT_MIX, MixError, Profile, assign_profiles, parse_mix
from simulate.report import CaseLinks, html_report, summarise
from simulate.timescale import (
    policy_now,
    time_scale_for,
    to_toml,
    write_compressed_policy,
)

pytestmark = pytest.mark.unit

AS_OF = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def portfolio(count: int = 200, seed: int = 7, **kwargs: object) -> list[SimulatedLoan]:
    return generate_portfolio(count, seed=seed, mix=DEFAULT_MIX, as_of=AS_OF, **kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------- portfolio


def test_same_seed_same_portfolio_and_another_seed_another() -> None:
    assert portfolio(seed=7) == portfolio(seed=7)
    assert portfolio(seed=7) != portfolio(seed=8)


def test_money_is_decimal_at_the_currency_scale() -> None:
    for loan in portfolio():
        event = loan.overdue
        for name in event.MONEY_FIELDS:
            value = getattr(event, name)
            assert isinstance(value, Decimal)
            assert value == value.quantize(Decimal("0.01"))
        assert event.overdue_amount <= event.total_outstanding
        if loan.finances is not None:
            assert isinstance(loan.finances.monthly_income, Decimal)
            assert loan.finances.currency == event.currency


def test_json_on_the_wire_carries_money_as_strings() -> None:
    raw = portfolio(1)[0].overdue.model_dump_json()
    assert '"principal_outstanding":"' in raw


def test_mix_is_respected_exactly() -> None:
    mix = parse_mix("cooperative=40,unresponsive=10,wilful=50")
    counts = Counter(loan.profile for loan in generate_portfolio(
        100, seed=1, mix=mix, as_of=AS_OF))  # fmt: skip
    assert counts == {Profile.COOPERATIVE: 40, Profile.UNRESPONSIVE: 10, Profile.WILFUL: 50}


def test_largest_remainder_assignment_sums_to_count() -> None:
    profiles = assign_profiles(7, {Profile.COOPERATIVE: 1, Profile.DISPUTES: 1}, random.Random(1))
    assert len(profiles) == 7
    assert sorted(Counter(profiles).values()) == [3, 4]


def test_unresponsive_borrowers_never_declare_finances() -> None:
    loans = generate_portfolio(20, seed=3, mix=parse_mix("unresponsive=1"), as_of=AS_OF)
    assert all(loan.finances is None for loan in loans)


def test_ids_are_opaque_and_unique_per_prefix() -> None:
    loans = portfolio(50, loan_prefix="RUN1")
    assert len({loan.case_id for loan in loans}) == 50
    assert all(loan.overdue.loan_id.startswith("RUN1-") for loan in loans)


def test_profiles_land_in_the_intended_tiers() -> None:
    """Wilful borrowers declare ample capacity; they are tiered wilful once they show it
    (here: declining an offer), never for being late."""
    policy = load_policy()
    declined = Engagement(conversations=1, offers_declined=1)
    tiers = {
        loan.profile: assess(loan.overdue, loan.finances, CreditRecord(), declined, policy).tier
        for loan in portfolio(300)
    }
    assert tiers[Profile.UNRESPONSIVE] == "non_responsive"
    assert tiers[Profile.WILFUL] == "wilful"
    first_look = {
        assess(loan.overdue, loan.finances, CreditRecord(), Engagement(), policy).tier
        for loan in portfolio(300)
        if loan.profile is Profile.WILFUL
    }
    assert "wilful" not in first_look


def test_borrowers_who_agree_and_pay_can_afford_a_plan_without_approval() -> None:
    """Cooperative and late-paying borrowers declare no lasting hardship: the generator must give
    them finances some plan fits, or they close "no option available" before they can agree.
    Long mortgages are the tightest case (a 6-month extension barely lowers the instalment)."""
    policy = load_policy()
    loans = generate_portfolio(
        30, seed=4, mix=parse_mix("cooperative=1,pays_late=1"), as_of=AS_OF,
        products=[ProductType.MORTGAGE, ProductType.CREDIT_CARD, ProductType.PERSONAL_LOAN],
    )  # fmt: skip
    for loan in loans:
        assessment = assess(loan.overdue, loan.finances, CreditRecord(), Engagement(), policy)
        proposal = propose(loan.overdue, assessment, policy, AS_OF.date() + timedelta(days=30))
        automatic = [o for o in proposal.offered if o.required_authority.value == "automatic"]
        assert automatic, (loan.profile, loan.overdue.product, proposal.excluded)


def test_most_temporary_hardship_borrowers_get_a_plan() -> None:
    policy = load_policy()
    loans = generate_portfolio(
        20, seed=6, mix=parse_mix("temporary_hardship=1"), as_of=AS_OF,
        products=[ProductType.CREDIT_CARD, ProductType.PERSONAL_LOAN],
    )  # fmt: skip
    offered = sum(
        1
        for loan in loans
        if propose(
            loan.overdue,
            assess(loan.overdue, loan.finances, CreditRecord(), Engagement(), policy),
            policy,
            AS_OF.date() + timedelta(days=30),
        ).offered
    )
    assert offered >= 15


@pytest.mark.parametrize(
    ("text", "message"),
    [("cooperative", "name=weight"), ("nobody=3", "unknown profile"),
     ("wilful=-1", "whole number"), ("wilful=0", "every weight is 0")],
)  # fmt: skip
def test_bad_mix_is_refused_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(MixError, match=message):
        parse_mix(text)


def test_no_mix_is_the_default_book() -> None:
    assert parse_mix(None) == DEFAULT_MIX


# ---------------------------------------------------------------- time


def test_compressed_policy_loads_and_marks_its_version(tmp_path: Path) -> None:
    written = write_compressed_policy(None, tmp_path / "p.toml", Decimal(1))
    policy = load_policy(written.path)
    assert policy.version == written.version
    assert "+sim" in policy.version
    assert written.time_scale == 86_400
    assert policy.durations == load_policy().durations.model_copy(update={"time_scale": 86_400})


def test_compressed_policy_can_override_durations_and_says_so(tmp_path: Path) -> None:
    written = write_compressed_policy(
        None, tmp_path / "p.toml", Decimal(1), durations={"first_instalment_days": 3650},
        tag="asleep",
    )  # fmt: skip
    policy = load_policy(written.path)
    assert policy.version.endswith("+sim86400+asleep")
    assert policy.durations.first_instalment_days == 3650
    assert policy.durations.time_scale == 86_400


def test_payments_are_timed_on_the_case_own_clock() -> None:
    """The borrower pays at 10:00 of the policy date, mapped back through the case's anchor and
    the case's time scale (not the run's setting)."""
    loan = one("cooperative")
    compressed = view_of(loan, CaseStage.TRACK, time_scale=86_400)
    due = (AS_OF + timedelta(days=30)).date()
    # 30 policy days and one hour after the anchor (09:00): 30 s and 1/24 s of server time.
    assert server_time_of(compressed, due) == AS_OF + timedelta(seconds=30, microseconds=41_667)
    real_time = view_of(loan, CaseStage.TRACK)
    assert server_time_of(real_time, due) == datetime.combine(due, AS_OF.timetz()).replace(hour=10)


def test_time_scale_and_policy_clock() -> None:
    assert time_scale_for(Decimal(1)) == 86_400
    assert time_scale_for(Decimal("0.5")) == 172_800
    opened = AS_OF
    assert policy_now(opened, opened + timedelta(seconds=2), 86_400) == opened + timedelta(days=2)


def test_toml_writer_keeps_decimals_exact() -> None:
    assert to_toml({"a": Decimal("0.10"), "t": {"x": [1, 2], "s": 'q"'}}) == (
        'a = 0.10\n\n[t]\nx = [1, 2]\ns = "q\\""\n'
    )


# ---------------------------------------------------------------- borrower decisions


def one(profile: str) -> SimulatedLoan:
    return generate_portfolio(1, seed=5, mix=parse_mix(f"{profile}=1"), as_of=AS_OF)[0]


def view_of(loan: SimulatedLoan, stage: CaseStage, **fields: object) -> CaseView:
    return CaseView(
        case_id=loan.case_id,
        loan_id=loan.overdue.loan_id,
        stage=stage,
        policy_version="p",
        opened_at=AS_OF,
        **fields,  # type: ignore[arg-type]
    )


CONTACTED = (
    ContactAttempt(channel=ContactChannel.SMS, at=AS_OF, outcome=ContactOutcome.DELIVERED),
)


def test_cooperative_answers_once_contacted_and_only_once() -> None:
    loan, memory, rng = one("cooperative"), b.BorrowerMemory(), random.Random(1)
    assert b.decide(loan, view_of(loan, CaseStage.COLLECT_INFO), memory, rng) == []
    memory.cure_decided = True  # this test is not about cures
    actions = b.decide(loan, view_of(loan, CaseStage.COLLECT_INFO, contact_log=CONTACTED),
                       memory, rng)  # fmt: skip
    assert [type(a) for a in actions] == [b.SendFinances]
    assert b.decide(loan, view_of(loan, CaseStage.COLLECT_INFO, contact_log=CONTACTED),
                    memory, rng) == []  # fmt: skip


def test_unresponsive_borrower_does_nothing() -> None:
    loan = one("unresponsive")
    view = view_of(loan, CaseStage.COLLECT_INFO, contact_log=CONTACTED)
    assert b.decide(loan, view, b.BorrowerMemory(), random.Random(1)) == []


def test_disputing_borrower_disputes_and_operations_review() -> None:
    loan, memory = one("disputes"), b.BorrowerMemory()
    view = view_of(loan, CaseStage.COLLECT_INFO, contact_log=CONTACTED)
    assert b.decide(loan, view, memory, random.Random(1)) == [b.RaiseDispute()]
    disputed = view_of(loan, CaseStage.COLLECT_INFO, holds={"disputed": True})
    assert [type(a) for a in b.decide(loan, disputed, memory, random.Random(1))] == [
        b.ResolveDispute
    ]


def test_cooperative_chooses_the_best_ranked_option_signs_and_pays_every_instalment() -> None:
    loan, memory, rng = one("cooperative"), b.BorrowerMemory(), random.Random(2)
    memory.cure_decided = True
    policy, _, proposal = _proposal_for(loan)
    assert proposal.offered, "the test loan must get an offer"
    actions = b.decide(loan, view_of(loan, CaseStage.PROPOSE, proposal=proposal), memory, rng)
    chosen = [a for a in actions if isinstance(a, b.ChooseOption)]
    best = min(
        (o for o in proposal.offered if o.required_authority.value == "automatic"),
        key=lambda o: o.rank,
    )
    assert chosen == [b.ChooseOption(best.option_id)]
    agreement = issue_agreement(
        agreement_id=f"{loan.case_id}-a1", case_id=loan.case_id, option=best,
        loan=loan.overdue, policy=policy, issued_at=AS_OF,
    )  # fmt: skip
    assert isinstance(agreement, Agreement)
    sign_view = view_of(loan, CaseStage.SIGN, proposal=proposal, agreement=agreement)
    assert b.decide(loan, sign_view, memory, rng) == [b.SignAgreement(agreement.agreement_id)]
    schedule = tuple(TrackedInstalment(instalment=i) for i in agreement.schedule.instalments)
    track = view_of(loan, CaseStage.TRACK, agreement=agreement, schedule=schedule)
    payments = b.decide(loan, track, memory, rng)
    assert [p.number for p in payments if isinstance(p, b.PayInstalment)] == [
        i.number for i in agreement.schedule.instalments
    ]
    assert all(isinstance(p.amount, Decimal) for p in payments if isinstance(p, b.PayInstalment))
    assert b.decide(loan, track, memory, rng) == []  # each instalment planned once


def _proposal_for(loan: SimulatedLoan):  # type: ignore[no-untyped-def]
    policy = load_policy()
    assessment = assess(loan.overdue, loan.finances, CreditRecord(), Engagement(), policy)
    proposal = propose(loan.overdue, assessment, policy, AS_OF.date() + timedelta(days=30))
    return policy, assessment, proposal


def test_the_same_offer_after_an_expired_agreement_is_answered_again() -> None:
    loan, memory, rng = one("cooperative"), b.BorrowerMemory(), random.Random(2)
    policy, assessment, proposal = _proposal_for(loan)
    first = view_of(loan, CaseStage.PROPOSE, proposal=proposal, assessment=assessment)
    [choice] = [a for a in b.decide(loan, first, memory, rng) if isinstance(a, b.ChooseOption)]
    assert b.decide(loan, first, memory, rng) == []  # answered once
    option = proposal.option(choice.option_id)
    expired = issue_agreement(
        agreement_id=f"{loan.case_id}-a1", case_id=loan.case_id, option=option,
        loan=loan.overdue, policy=policy, issued_at=AS_OF,
    )  # fmt: skip
    assert isinstance(expired, Agreement)
    again = view_of(loan, CaseStage.PROPOSE, proposal=proposal, assessment=assessment,
                    agreement=expired)  # fmt: skip
    assert [a for a in b.decide(loan, again, memory, rng) if isinstance(a, b.ChooseOption)]


def test_an_offer_after_a_counter_proposal_is_answered() -> None:
    """A counter-proposal re-assesses the case: a new affordable instalment, a new offer (even
    if its option ids are the same as before) that the borrower answers."""
    loan, memory = one("cooperative"), b.BorrowerMemory()
    _, assessment, proposal = _proposal_for(loan)
    view = view_of(loan, CaseStage.PROPOSE, proposal=proposal, assessment=assessment)
    assert b.decide(loan, view, memory, random.Random(1)) != []
    assert b.decide(loan, view, memory, random.Random(1)) == []
    affordability = assessment.affordability
    assert affordability is not None
    lower = affordability.model_copy(
        update={"affordable_instalment": affordability.affordable_instalment - 1}
    )
    reassessed = view_of(
        loan,
        CaseStage.PROPOSE,
        proposal=proposal,
        assessment=assessment.model_copy(update={"affordability": lower}),
    )
    assert b.decide(loan, reassessed, memory, random.Random(1)) != []


def test_late_payers_pay_within_grace_but_not_on_its_last_day() -> None:
    loan, memory = one("pays_late"), b.BorrowerMemory()
    memory.cure_decided = True
    policy, _, proposal = _proposal_for(loan)
    option = min(proposal.offered, key=lambda o: o.rank)
    agreement = issue_agreement(
        agreement_id=f"{loan.case_id}-a1", case_id=loan.case_id, option=option,
        loan=loan.overdue, policy=policy, issued_at=AS_OF,
    )  # fmt: skip
    assert isinstance(agreement, Agreement)
    schedule = tuple(TrackedInstalment(instalment=i) for i in agreement.schedule.instalments)
    track = view_of(loan, CaseStage.TRACK, agreement=agreement, schedule=schedule)
    payments = [a for a in b.decide(loan, track, memory, random.Random(3), grace_days=5)
                if isinstance(a, b.PayInstalment)]  # fmt: skip
    assert payments
    due = {i.number: i.due_date for i in agreement.schedule.instalments}
    assert all(1 <= (p.on - due[p.number]).days <= 4 for p in payments)


def test_a_signature_before_the_envelope_exists_is_premature() -> None:
    assert is_premature("sign: not the envelope this case is waiting for")
    assert is_premature("choose_option: no offer is open yet (waiting for approval or options)")
    assert not is_premature("choose_option: the offer was already answered")


def test_refused_premature_action_can_be_retried() -> None:
    loan, memory = one("cooperative"), b.BorrowerMemory()
    memory.cure_decided = True
    view = view_of(loan, CaseStage.COLLECT_INFO, contact_log=CONTACTED)
    [action] = b.decide(loan, view, memory, random.Random(1))
    b.forget(memory, action, view)
    assert b.decide(loan, view, memory, random.Random(1)) != []


# ---------------------------------------------------------------- report


def test_report_counts_outcomes_and_recovery_in_decimal() -> None:
    loans = portfolio(4)
    records = [CaseRecord(loan) for loan in loans]
    records[0].outcome, records[0].tier = "cured", "light"
    records[0].recovered = loans[0].overdue.total_outstanding
    records[1].outcome, records[1].outcome_reasons = "escalated_legal", ("WILFUL_DEFAULT",)
    summary = summarise(records)
    assert summary.closed == 2
    assert isinstance(summary.recovery_rate, Decimal)
    assert summary.recovered == loans[0].overdue.total_outstanding
    profile = loans[1].profile.value
    assert summary.to_json()["closing_reasons_by_profile"][profile] == {
        "escalated_legal: WILFUL_DEFAULT": 1
    }
    links = CaseLinks("http://desk:8250", "http://ui:8233", "ns")
    page = html_report(summary, "t", ["note"], records, links)
    assert page.count("<svg") == 3
    assert "cured" in page
    for record in records:  # every case listed, with its amount and its links
        assert f'href="http://desk:8250/cases/{record.case_id}"' in page
        assert f'href="http://ui:8233/namespaces/ns/workflows/{record.case_id}"' in page
        assert f"{record.loan.overdue.total_outstanding} {record.loan.overdue.currency}" in page
    assert "<td>escalated_legal</td><td>WILFUL_DEFAULT</td>" in page


@pytest.mark.parametrize(
    ("text", "complaint"),
    [("version = ", "not valid TOML"), ("[x]\n", "contact_pack: required")],
)
def test_a_broken_policy_is_named_as_itself_not_as_the_derived_file(
    tmp_path: Path, text: str, complaint: str
) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text(text)
    derived = tmp_path / "derived" / "sim.toml"
    with pytest.raises(PolicyError) as refused:
        write_compressed_policy(broken, derived, Decimal(1))
    assert str(refused.value).startswith(f"{broken}: {complaint}")
    assert not derived.exists()
