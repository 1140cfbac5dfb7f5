"""What a simulated borrower (and, for approvals and disputes, operations staff) does next,
given the case as the bank's channels show it. Pure: the engine executes the actions.

``decide`` is called whenever something happened to the case (an event on ``case.events.v1``);
it returns actions and records in ``BorrowerMemory`` what was decided, so each thing is done once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

from schemas.assessment import FinancialProfile
from schemas.case import CaseStage, CaseView, InstalmentStatus
from schemas.money import quantize
from schemas.plan import ApprovalAuthority, PlanOption
from simulate.portfolio import SimulatedLoan
from simulate.profiles import Profile

DISPUTE_UPHELD_SHARE = 0.4
APPROVAL_SHARE = 0.85
"""Share of the waivers above automatic authority that operations approve (the rest lapse)."""
CURE_SHARE = {Profile.COOPERATIVE: 0.05, Profile.PAYS_LATE: 0.15}
"""Share of borrowers who bring the loan current outside any plan."""
MISS_SHARE = {
    Profile.COOPERATIVE: 0.0,
    Profile.TEMPORARY_HARDSHIP: 0.05,
    Profile.LASTING_HARDSHIP: 0.2,
    Profile.WILFUL: 0.9,
    Profile.PAYS_LATE: 0.05,
    Profile.DISPUTES: 0.02,
}
WILFUL_DECLINE_SHARE = 0.7
WILFUL_NO_SIGNATURE_SHARE = 0.4
LASTING_COUNTER_SHARE = 0.5


@dataclass(frozen=True)
class SendFinances:
    profile: FinancialProfile
    via_kafka: bool
    """True: ``customer.hardship.v1`` (portal); False: the ``submit_financials`` update (agent)."""


@dataclass(frozen=True)
class ChooseOption:
    option_id: str


@dataclass(frozen=True)
class CounterPropose:
    profile: FinancialProfile


@dataclass(frozen=True)
class DeclineOffer:
    pass


@dataclass(frozen=True)
class SignAgreement:
    agreement_id: str


@dataclass(frozen=True)
class PayInstalment:
    agreement_id: str
    number: int
    amount: Decimal
    currency: str
    on: date
    """Policy date of the payment."""


@dataclass(frozen=True)
class CureLoan:
    """Pay what is owed outside the plan; core banking then reports the loan cured."""

    amount: Decimal
    currency: str
    on: date | None
    """None: now."""


@dataclass(frozen=True)
class RaiseDispute:
    pass


@dataclass(frozen=True)
class ResolveDispute:
    """Operations' review of a dispute."""

    upheld: bool


@dataclass(frozen=True)
class ApproveOptions:
    """Operations approve waivers above the automatic authority."""

    option_ids: tuple[str, ...]
    authority: ApprovalAuthority


Action = (
    SendFinances
    | ChooseOption
    | CounterPropose
    | DeclineOffer
    | SignAgreement
    | PayInstalment
    | CureLoan
    | RaiseDispute
    | ResolveDispute
    | ApproveOptions
)


@dataclass
class BorrowerMemory:
    finances_sent_for: set[str] = field(default_factory=set)
    """Rounds (see ``_round``) in which the borrower already answered."""
    answered_offers: set[tuple[str, ...]] = field(default_factory=set)
    approvals_handled: set[str] = field(default_factory=set)
    approved: set[str] = field(default_factory=set)
    counters: int = 0
    signatures_handled: set[str] = field(default_factory=set)
    instalments_planned: set[tuple[str, int]] = field(default_factory=set)
    disputed: bool = False
    dispute_resolved: bool = False
    cure_decided: bool = False


def _round(view: CaseView) -> str:
    # A broken plan sends the case back to collect_info with its agreement still on record.
    return view.agreement.agreement_id if view.agreement else "first"


def decide(
    loan: SimulatedLoan,
    view: CaseView,
    memory: BorrowerMemory,
    rng: random.Random,
    grace_days: int = 5,
) -> list[Action]:
    if view.outcome is not None:
        return []
    if view.holds.disputed:
        if memory.dispute_resolved:
            return []
        memory.dispute_resolved = True
        return [ResolveDispute(upheld=rng.random() < DISPUTE_UPHELD_SHARE)]
    stage = view.stage
    if stage is CaseStage.COLLECT_INFO:
        return _collect_info(loan, view, memory, rng)
    if stage is CaseStage.PROPOSE and view.proposal is not None:
        return _propose(loan, view, memory, rng)
    if stage is CaseStage.SIGN and view.agreement is not None:
        return _sign(loan, view, memory, rng)
    if stage is CaseStage.TRACK and view.agreement is not None:
        return _track(loan, view, memory, rng, grace_days)
    return []


def _collect_info(
    loan: SimulatedLoan, view: CaseView, memory: BorrowerMemory, rng: random.Random
) -> list[Action]:
    if loan.finances is None or not view.contact_log:
        return []  # unresponsive, or not asked yet
    if loan.profile is Profile.DISPUTES and not memory.disputed:
        memory.disputed = True
        return [RaiseDispute()]
    if not memory.cure_decided:
        memory.cure_decided = True
        if loan.profile is Profile.COOPERATIVE and rng.random() < CURE_SHARE[loan.profile]:
            return [CureLoan(loan.overdue.overdue_amount, loan.overdue.currency, on=None)]
    key = _round(view)
    if key in memory.finances_sent_for:
        return []
    memory.finances_sent_for.add(key)
    return [SendFinances(loan.finances, via_kafka=rng.random() < 0.5)]


def _propose(
    loan: SimulatedLoan, view: CaseView, memory: BorrowerMemory, rng: random.Random
) -> list[Action]:
    assert view.proposal is not None
    actions: list[Action] = []
    needing = [
        o
        for o in view.proposal.offered
        if o.required_authority != ApprovalAuthority.AUTOMATIC
        and o.option_id not in memory.approvals_handled
    ]
    if needing:
        memory.approvals_handled.update(o.option_id for o in needing)
        if rng.random() < APPROVAL_SHARE:
            authority = max((o.required_authority for o in needing), key=lambda a: a.level)
            memory.approved.update(o.option_id for o in needing)
            actions.append(ApproveOptions(tuple(o.option_id for o in needing), authority))
    available = [
        o
        for o in view.proposal.offered
        if o.required_authority == ApprovalAuthority.AUTOMATIC or o.option_id in memory.approved
    ]
    offer = _offer_key(view, available)
    if not available or offer in memory.answered_offers:
        return actions
    memory.answered_offers.add(offer)
    by_rank = sorted(available, key=lambda o: o.rank)
    profile = loan.profile
    if profile is Profile.WILFUL:
        if rng.random() < WILFUL_DECLINE_SHARE:
            return [*actions, DeclineOffer()]
        return [*actions, ChooseOption(by_rank[0].option_id)]
    if profile is Profile.LASTING_HARDSHIP and loan.finances is not None:
        if memory.counters < 1 and rng.random() < LASTING_COUNTER_SHARE:
            memory.counters += 1
            return [*actions, CounterPropose(_tighter_budget(loan.finances))]
    if profile in (Profile.TEMPORARY_HARDSHIP, Profile.LASTING_HARDSHIP):
        return [*actions, ChooseOption(min(available, key=_first_instalment).option_id)]
    return [*actions, ChooseOption(by_rank[0].option_id)]


def _offer_key(view: CaseView, available: list[PlanOption]) -> tuple[str, ...]:
    """What makes an offer new to the borrower. The same options come back after an agreement
    expired unsigned (the case re-offers its proposal: the round names the expired agreement)
    and after a counter-proposal (re-assessed: the affordable instalment changed), and each
    time the case waits for an answer again."""
    affordable = ""
    if view.assessment is not None and view.assessment.affordability is not None:
        affordable = str(view.assessment.affordability.affordable_instalment)
    assert view.proposal is not None
    return (
        _round(view),
        view.proposal.policy_version,
        affordable,
        *sorted(f"{o.option_id}:{o.expected_recovery}" for o in available),
    )


def _first_instalment(option: PlanOption) -> Decimal:
    return option.first_instalment


def _tighter_budget(finances: FinancialProfile) -> FinancialProfile:
    """A counter-proposal: "I cannot pay that much": expenses turn out 10 % higher."""
    expenses = quantize(finances.essential_expenses * Decimal("1.10"), finances.currency)
    return finances.model_copy(update={"essential_expenses": expenses})


def _sign(
    loan: SimulatedLoan, view: CaseView, memory: BorrowerMemory, rng: random.Random
) -> list[Action]:
    assert view.agreement is not None
    agreement_id = view.agreement.agreement_id
    if agreement_id in memory.signatures_handled:
        return []
    memory.signatures_handled.add(agreement_id)
    if loan.profile is Profile.WILFUL and rng.random() < WILFUL_NO_SIGNATURE_SHARE:
        return []  # lets the envelope expire
    return [SignAgreement(agreement_id)]


def _track(
    loan: SimulatedLoan,
    view: CaseView,
    memory: BorrowerMemory,
    rng: random.Random,
    grace_days: int,
) -> list[Action]:
    assert view.agreement is not None
    agreement = view.agreement
    actions: list[Action] = []
    cure_at: int | None = None
    if not memory.cure_decided:
        memory.cure_decided = True
        if rng.random() < CURE_SHARE.get(loan.profile, 0.0) and len(view.schedule) > 1:
            cure_at = 2
    for tracked in view.schedule:
        instalment = tracked.instalment
        key = (agreement.agreement_id, instalment.number)
        if tracked.status is not InstalmentStatus.SCHEDULED or key in memory.instalments_planned:
            continue
        memory.instalments_planned.add(key)
        currency = agreement.schedule.currency
        if cure_at == instalment.number:
            earlier = view.schedule[: instalment.number - 1]
            paid = sum((t.instalment.amount for t in earlier), Decimal(0))
            remaining = max(agreement.schedule.balance - paid, instalment.amount)
            actions.append(CureLoan(remaining, currency, instalment.due_date))
            break
        if rng.random() < MISS_SHARE[loan.profile]:
            continue
        if loan.profile is Profile.PAYS_LATE:
            # Late, within the grace period, but not on its last day: the case checks the ledger
            # at the next midnight, and on a compressed clock (a day a second) the payment's
            # trip through Kafka to the ledger is a good part of that last day.
            offset = rng.randint(1, max(grace_days - 1, 1))
        else:
            offset = -rng.randint(0, 2)
        actions.append(
            PayInstalment(
                agreement.agreement_id,
                instalment.number,
                instalment.amount,
                currency,
                instalment.due_date + timedelta(days=offset),
            )
        )
    return actions


def forget(memory: BorrowerMemory, action: Action, view: CaseView) -> None:
    """The case refused ``action`` as premature (e.g. the offer was not open yet): allow the
    borrower to do it again on the next look."""
    if isinstance(action, SendFinances):
        memory.finances_sent_for.discard(_round(view))
    elif isinstance(action, ChooseOption | CounterPropose | DeclineOffer):
        memory.answered_offers.clear()
        if isinstance(action, CounterPropose):
            memory.counters -= 1
    elif isinstance(action, SignAgreement):
        memory.signatures_handled.discard(action.agreement_id)
    elif isinstance(action, RaiseDispute):
        memory.disputed = False
    elif isinstance(action, ResolveDispute):
        memory.dispute_resolved = False
    elif isinstance(action, ApproveOptions):
        memory.approvals_handled.difference_update(action.option_ids)
        memory.approved.difference_update(action.option_ids)
