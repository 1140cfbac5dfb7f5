"""The six sequences the audit of the contact rules against the regulation texts found allowed
(issue 12), each replayed and now refused; and the same rules with the case machine driving
several cases and episodes of one borrower.

Regressions 1, 2 and 5 run the contact activity itself (its gateway simulator records every
call); 3 and 6 the case machine; 4 the packs and ``may_contact`` alone.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from temporalio.exceptions import ApplicationError

from activities.case_activities import CaseActivities, ContactRequest
from activities.contact_channels import ContactDirectorySimulator, ContactGatewaySimulator
from activities.core_banking import CoreBankingSimulator
from activities.esign import ESignatureSimulator
from activities.publisher import InMemoryCaseEventPublisher
from decisions.contact_ledger import LedgerState
from decisions.contact_rules import may_contact
from decisions.local_days import start_of_day
from decisions.policy import bundled_contact_packs, load_contact_rules, load_policy
from engine import commands as do
from engine import messages as msg
from engine.actions import (
    RecordContact,
    StartBreathingSpace,
    StartMentalHealthCrisis,
    SubmitFinancials,
    TreatmentEnded,
)
from engine.machine import receive
from schemas.case import CaseStage, CheckpointKind
from schemas.contact import (
    ContactAttempt,
    ContactChannel,
    ContactHolds,
    ContactOutcome,
    Direction,
)
from tests import factories
from tests.unit.case_driver import Driver, Refused, borrower
from tests.unit.contact_oracle import broken_rules
from tests.unit.ledger_double import InProcessContactLedger

pytestmark = pytest.mark.unit

SHANGHAI, NEW_YORK, LONDON = "Asia/Shanghai", "America/New_York", "Europe/London"
CN, REG_F, UK = (load_contact_rules(n) for n in ("cn-2026", "us-reg-f", "uk-breathing-space"))
DAY = timedelta(days=1)


def local(zone: str, *args: int) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(zone))


class World:
    """The contact activity with its simulators: one borrower, a clock moved by hand."""

    def __init__(self, zone: str, **gateway: Any) -> None:
        self.now = datetime(2026, 3, 2, tzinfo=UTC)
        self.ledger = InProcessContactLedger()
        self.gateway = ContactGatewaySimulator(**gateway)
        self.activities = CaseActivities(
            core_banking=CoreBankingSimulator(),
            directory=ContactDirectorySimulator(default_time_zone=zone),
            gateway=self.gateway,
            esign=ESignatureSimulator(),
            publisher=InMemoryCaseEventPublisher(),
            clock=self._clock,
            ledger=self.ledger,
        )
        self.asked = 0

    async def _clock(self) -> datetime:
        return self.now

    async def contact(self, case_id: str, loan_id: str, rules=CN, channel="phone"):
        self.asked += 1
        return await self.activities.contact_borrower(
            ContactRequest(
                case_id=case_id,
                borrower_id="B-77",
                loan_id=loan_id,
                channel=ContactChannel(channel),
                template="info_request",
                attempt_id=f"{case_id}-a{self.asked}-{channel}",
                holds=ContactHolds(),
                rules=rules,
            )
        )

    def calls(self) -> int:
        return sum(1 for channel, *_ in self.gateway.sent.values() if channel == "phone")


# --- 1. China: per debtor and contact detail, across loans and episodes -------------------


async def test_cn_two_loans_of_one_borrower_get_at_most_six_unanswered_calls_a_day():
    world = World(SHANGHAI)
    world.now = local(SHANGHAI, 2026, 3, 2, 9, 0)
    for minute in range(0, 120, 10):  # each case wants a call every 10 minutes
        world.now = local(SHANGHAI, 2026, 3, 2, 9, minute % 60) + timedelta(hours=minute // 60)
        await world.contact("case-L-1-20260115", "L-1")
        await world.contact("case-L-2-20260201", "L-2")
    assert world.calls() == 6  # was 12: each case counted only its own log
    world.now = local(SHANGHAI, 2026, 3, 3, 8, 0)
    assert (await world.contact("case-L-2-20260201", "L-2")).attempt is not None  # a new day


async def test_cn_a_new_episode_of_the_same_loan_does_not_start_from_zero():
    world = World(SHANGHAI)
    world.now = local(SHANGHAI, 2026, 3, 2, 9, 0)
    for _ in range(6):
        await world.contact("case-L-1-20260115", "L-1")
    refused = await world.contact("case-L-1-20260301", "L-1")  # the next episode's case
    assert refused.attempt is None and refused.decision.reason == "DAILY_CAP_REACHED"
    assert world.calls() == 6


# --- 2. Reg F: conversations either way, per debt across episodes ------------------------


def reg_f_policy():
    return load_policy().model_copy(
        update={"contact": REG_F, "contact_channels": (ContactChannel.PHONE,)}
    )


def test_reg_f_a_conversation_the_borrower_started_starts_seven_quiet_days():
    ledger = LedgerState(borrower_id="B-77")
    opened = local(NEW_YORK, 2026, 8, 10, 10, 0)  # a Monday
    driver = Driver(
        loan=factories.loan(occurred_at=opened - timedelta(hours=1)),
        policy=reg_f_policy(),
        now=opened,
        time_zone=NEW_YORK,
        ledger=ledger,
        contact_outcome=ContactOutcome.UNANSWERED,
    ).opened()
    assert [e.direction for e in ledger.entries] == [Direction.OUTBOUND]  # the info request
    driver.advance(timedelta(days=2, hours=2))  # Wednesday 12 August, noon: the borrower calls
    driver.act(RecordContact(staff_id="S-1", direction="inbound", conversation=True))
    driver.run()
    assert ledger.entries[-1].direction is Direction.INBOUND and ledger.entries[-1].conversation
    driver.advance(timedelta(days=14))
    calls = [e.at for e in ledger.entries if e.direction is Direction.OUTBOUND]
    # Comment 14(b)(2)(i)-1.ii: its day is the first of 7; no call before Wednesday 19 August.
    assert not [
        at for at in calls if local(NEW_YORK, 2026, 8, 12) <= at < local(NEW_YORK, 2026, 8, 19)
    ]
    assert local(NEW_YORK, 2026, 8, 19, 8, 0) in calls  # the reminder, deferred to then
    assert "contact_recorded" in driver.decisions()
    assert driver.state.conversations == 1


async def test_reg_f_a_new_episode_does_not_reset_seven_calls_in_seven_days():
    world = World(NEW_YORK)
    for day, count in ((3, 3), (4, 3), (5, 1)):  # 7 calls about L-1, Monday to Wednesday
        for n in range(count):
            world.now = local(NEW_YORK, 2026, 8, day, 10 + n, 0)
            result = await world.contact("case-L-1-20260601", "L-1", rules=REG_F)
            assert result.attempt is not None
    world.now = local(NEW_YORK, 2026, 8, 9, 10, 0)  # Sunday: still within the 7 days
    refused = await world.contact("case-L-1-20260805", "L-1", rules=REG_F)  # new episode
    assert refused.decision.reason == "WEEKLY_CAP_REACHED"
    assert refused.decision.next_allowed_at == local(NEW_YORK, 2026, 8, 10, 8, 0)
    # Another debt of the same borrower is another count (1006.14(b)(4)).
    assert (await world.contact("case-L-2-20260805", "L-2", rules=REG_F)).attempt is not None


# --- 3. UK moratoria with their calendars ------------------------------------------------


def uk_driver(**extra: Any) -> Driver:
    policy = load_policy().model_copy(update={"contact": UK})
    opened = local(LONDON, 2026, 3, 20, 10, 0)
    return Driver(
        loan=factories.loan(occurred_at=opened - timedelta(hours=1), currency="CNY"),
        policy=policy,
        now=opened,
        time_zone=LONDON,
        ledger=LedgerState(borrower_id="B-77"),
        **extra,
    ).opened()


def test_breathing_space_runs_sixty_borrower_days_from_its_first_day():
    driver = uk_driver()
    # Entered in the register on Friday 20 March: the moratorium starts Saturday 21 March
    # (the clocks go forward on the 29th) and its 60th day is Tuesday 19 May.
    driver.act(StartBreathingSpace(staff_id="S-1", starts_on=date(2026, 3, 21)))
    holds = driver.state.holds
    assert holds.breathing_space_until == local(LONDON, 2026, 5, 20, 0, 0)
    assert driver.state.holds.in_force()[0].reason == "BREATHING_SPACE"
    before = len(driver.state.contact_log)
    driver.advance(local(LONDON, 2026, 5, 19, 23, 0) - driver.now)  # day 60, late
    assert driver.state.holds.any() and len(driver.state.contact_log) == before
    driver.advance(local(LONDON, 2026, 5, 20, 12, 0) - driver.now)
    assert not driver.state.holds.any()
    audit = {r.kind: r.summary for r in driver.state.decisions}
    assert audit["breathing_space"] == (
        "S-1",
        "BREATHING_SPACE",
        "FIRST_DAY_20260321",
        "LAST_DAY_20260519",
    )
    assert driver.kinds().count("paused") == 1 and driver.kinds()[-1] != "paused"


def test_breathing_space_starts_tomorrow_in_the_borrowers_zone_by_default():
    driver = Driver(now=datetime(2026, 3, 2, 17, 0, tzinfo=UTC)).opened()  # 01:00 on 3 March
    driver.act(StartBreathingSpace(staff_id="S-1"))
    assert driver.state.holds.breathing_space_from == date(2026, 3, 4)  # not 3 March (UTC)
    with pytest.raises(Refused, match="starts the day after its register entry"):
        Driver(now=datetime(2026, 3, 2, 17, 0, tzinfo=UTC)).opened().act(
            StartBreathingSpace(staff_id="S-1", starts_on=date(2026, 3, 5))
        )
    with pytest.raises(Refused, match="would already be over"):
        Driver().opened().act(StartBreathingSpace(staff_id="S-1", starts_on=date(2025, 12, 1)))


def test_mental_health_crisis_moratorium_lasts_until_thirty_days_after_treatment():
    driver = uk_driver()
    driver.act(StartMentalHealthCrisis(staff_id="S-1"))
    wait = driver.run()
    assert isinstance(wait, do.Wait) and wait.until is None  # open-ended: no timer to end it
    assert [h.reason for h in driver.state.holds.in_force()] == ["MENTAL_HEALTH_CRISIS"]
    driver.advance(120 * DAY)
    assert driver.state.holds.any()
    paused = [e for e in driver.published if e.kind == "paused"]
    assert [e.reason for e in paused] == ["mental_health_crisis"]  # not an operator pause
    with pytest.raises(Refused, match="is after today"):
        driver.act(TreatmentEnded(staff_id="S-1", ended_on=driver.now.date() + DAY))
    ended = driver.now.date() - timedelta(days=3)
    driver.act(TreatmentEnded(staff_id="S-1", ended_on=ended))
    end = start_of_day(ended + timedelta(days=31), LONDON)
    assert driver.state.holds.mental_health_crisis_until == end
    wait = driver.run()
    assert isinstance(wait, do.Wait) and wait.kind is CheckpointKind.HOLD_ENDS
    assert wait.until == end
    driver.advance(end - driver.now - timedelta(minutes=1))
    assert driver.state.holds.any()
    driver.advance(timedelta(minutes=2))
    assert not driver.state.holds.any() and "resumed" in driver.kinds()
    kinds = [r.kind for r in driver.state.decisions]
    assert ["mental_health_crisis", "treatment_ended", "mental_health_crisis_ended"] == [
        k for k in kinds if k.startswith(("mental", "treatment"))
    ]


# --- 4. Caps on texts and e-mails in every pack ------------------------------------------


@pytest.mark.parametrize("pack", bundled_contact_packs())
@pytest.mark.parametrize("channel", ["sms", "email"])
def test_every_pack_caps_texts_and_emails(pack, channel):
    rules = load_contact_rules(pack)
    zone = SHANGHAI
    log: list[ContactAttempt] = []
    day = local(zone, 2026, 3, 2, 0, 0)
    for minute in range(24 * 60):  # a message every minute the rules allow: 780 before
        at = day + timedelta(minutes=minute)
        decision = may_contact(
            channel=ContactChannel(channel),
            now=at,
            time_zone=zone,
            contact_log=log,
            holds=ContactHolds(),
            rules=rules,
        )
        if decision.allowed:
            log.append(ContactAttempt(channel=channel, at=at, outcome="delivered"))
    assert 1 <= len(log) <= 3


# --- 5. Attempts counted when made --------------------------------------------------------


async def test_an_attempt_whose_outcome_is_unknown_counts_and_a_retry_places_no_second_call():
    world = World(SHANGHAI)
    world.now = local(SHANGHAI, 2026, 3, 2, 9, 0)
    world.gateway.faults.lose_response_once.add("send_phone")
    request = dict(case_id="case-L-1-20260115", loan_id="L-1")
    with pytest.raises(ApplicationError):  # placed, then the answer was lost
        await world.contact(**request)
    world.asked -= 1  # Temporal retries the same activity: the same attempt id
    retried = await world.contact(**request)
    assert retried.attempt is not None
    assert world.calls() == 1
    entries = world.ledger.of("B-77").entries
    assert len(entries) == 1 and entries[0].outcome is ContactOutcome.UNANSWERED


async def test_calls_that_timed_out_count_toward_the_cap():
    world = World(SHANGHAI)
    world.now = local(SHANGHAI, 2026, 3, 2, 9, 0)
    world.gateway.faults.down = True  # every call times out: placed or not, nobody knows
    for _ in range(6):
        with pytest.raises(ApplicationError):
            await world.contact("case-L-1-20260115", "L-1")
    assert [e.outcome for e in world.ledger.of("B-77").entries] == [ContactOutcome.UNKNOWN] * 6
    world.gateway.faults.down = False
    refused = await world.contact("case-L-2-20260115", "L-2")
    assert refused.decision.reason == "DAILY_CAP_REACHED"


# --- 6. Dates in the borrower's calendar --------------------------------------------------


def test_the_first_due_date_is_the_borrowers_local_date():
    late = datetime(2026, 3, 2, 16, 30, tzinfo=UTC)  # already 3 March, 00:30, in Shanghai
    driver = Driver(now=late, loan=factories.loan(occurred_at=late - timedelta(hours=1)))
    driver.opened()
    driver.act(SubmitFinancials(profile=borrower()))
    driver.run()
    propose = next(c for c in driver.issued if isinstance(c, do.Propose))
    assert propose.first_due == date(2026, 4, 2)  # 3 March + 30 days; not 1 April


def test_instalment_checkpoints_fall_at_the_borrowers_midnight():
    driver = Driver().tracking()
    wait = driver.run()
    assert isinstance(wait, do.Wait) and wait.kind is CheckpointKind.INSTALMENT_DUE
    assert wait.until.astimezone(ZoneInfo(SHANGHAI)).time() == time(0)


# --- the case machine, several cases and episodes of one borrower -------------------------

ZONES = [SHANGHAI, NEW_YORK, LONDON, "Australia/Sydney", "America/Havana"]
STARTS = [datetime(2026, 3, 4, 1, 0, tzinfo=UTC), datetime(2026, 10, 21, 13, 0, tzinfo=UTC)]


class Borrower:
    """Every case of one borrower on one clock, sharing one contact ledger: the machine with
    the earliest due timer runs next, so attempts reach the ledger in time order."""

    def __init__(self, zone: str, policy, start: datetime, rng: random.Random) -> None:
        self.zone, self.policy, self.now, self.rng = zone, policy, start, rng
        self.ledger = LedgerState(borrower_id="B-77")
        self.cases: dict[str, Driver] = {}
        """The latest case of each loan."""
        self.all: list[Driver] = []
        self.held: list[tuple[str, frozenset[str | None], datetime]] = []
        """Each breathing space: its case, the attempts made before staff recorded it (an
        attempt due at that same instant ran first), and its end."""

    def answer(self, command: do.Contact) -> ContactOutcome:
        if command.channel is ContactChannel.PHONE:
            return self.rng.choice(
                [ContactOutcome.ANSWERED, ContactOutcome.UNANSWERED, ContactOutcome.UNKNOWN]
                + [ContactOutcome.UNANSWERED] * 3
            )
        return self.rng.choice([ContactOutcome.DELIVERED, ContactOutcome.UNKNOWN])

    def open(self, loan_id: str, episode: int) -> None:
        since = self.now.date() - timedelta(days=40 - episode)
        loan = factories.loan(
            event_id=f"ovd-{loan_id}-{episode}",
            loan_id=loan_id,
            occurred_at=self.now - timedelta(minutes=5),
            delinquent_since=since,
        )
        old = self.cases.get(loan_id)
        if old is not None:
            old.send(loan)  # a new episode supersedes the old case
            old.run()
        self.cases[loan_id] = Driver(
            loan=loan,
            policy=self.policy,
            now=self.now,
            time_zone=self.zone,
            ledger=self.ledger,
            outcome_of=self.answer,
        )
        self.all.append(self.cases[loan_id])

    def run_until(self, end: datetime) -> None:
        for _ in range(10_000):
            due = []
            for driver in self.all:
                driver.now = self.now
                wait = driver.run()
                if isinstance(wait, do.Wait) and wait.until is not None and wait.until <= end:
                    due.append((wait.until, id(driver), driver))
            if not due:
                break
            at, _, driver = min(due)
            self.now = max(self.now, at)
            driver.now = self.now
            receive(driver.state, msg.Tick(), driver.context())
        self.now = end
        for driver in self.all:
            driver.now = end
            driver.run()


@settings(max_examples=100, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    pack=st.sampled_from(bundled_contact_packs()),
    phone_only=st.booleans(),
    start=st.sampled_from(STARTS),
    loans=st.integers(1, 4),
    interventions=st.lists(
        st.tuples(
            st.integers(1, 20 * 24),  # hours after the start
            st.sampled_from(["new_episode", "conversation", "inbound_call", "breathing_space"]),
            st.integers(0, 3),
        ),
        max_size=6,
    ),
    seed=st.integers(0, 2**32),
)
def test_cases_and_episodes_of_one_borrower_stay_within_the_pack(
    zone, pack, phone_only, start, loans, interventions, seed
):
    policy = load_policy().model_copy(update={"contact": load_contact_rules(pack)})
    if phone_only:  # every attempt on one channel: the caps bind
        policy = policy.model_copy(update={"contact_channels": (ContactChannel.PHONE,)})
    world = Borrower(zone, policy, start, random.Random(seed))
    for n in range(loans):
        world.open(f"L-{n}", 0)
    episodes: Counter[str] = Counter()
    for hours, kind, which in sorted(interventions):
        world.run_until(start + timedelta(hours=hours))
        loan_id = f"L-{which % loans}"
        case = world.cases[loan_id]
        if kind == "new_episode":
            episodes[loan_id] += 1
            world.open(loan_id, episodes[loan_id])
        elif case.state.closed or not case.state.stages:
            continue
        elif kind in ("conversation", "inbound_call"):
            case.act(
                RecordContact(
                    staff_id="S-1", direction="inbound", conversation=kind == "conversation"
                )
            )
        elif (
            kind == "breathing_space" and case.refusal(StartBreathingSpace(staff_id="S-1")) is None
        ):
            case.act(StartBreathingSpace(staff_id="S-1"))
            until = case.state.holds.breathing_space_until
            assert until is not None
            before = frozenset(entry.attempt_id for entry in world.ledger.entries)
            world.held.append((case.state.case_id, before, until))
    world.run_until(start + timedelta(days=24))

    rules = policy.contact
    entries = sorted(world.ledger.entries, key=lambda entry: entry.at)
    # Opened in quiet hours and held before morning: a breathing space may leave no attempt.
    assert entries or world.held, "no case contacted the borrower at all"
    blocked = [
        r.summary[1] for d in world.all for r in d.state.decisions if r.kind == "contact_blocked"
    ]
    event(f"attempts: {len(entries) // 5 * 5}+")
    for reason in set(blocked):
        event(f"{pack}: {reason}")
    for index, entry in enumerate(entries):
        if entry.direction is not Direction.OUTBOUND:
            continue
        broken = broken_rules(
            rules, zone, entries[:index], channel=entry.channel.value, at=entry.at, debt=entry.debt
        )
        assert not broken, f"{entry} broke {broken}"
        for case_id, before, until in world.held:
            assert not (
                entry.attempt_id.startswith(case_id)
                and entry.attempt_id not in before
                and entry.at < until
            ), f"{entry} during {case_id}'s breathing space"
    # Each case's own log agrees with the ledger: nothing was contacted behind its back.
    made = {a.attempt_id for d in world.all for a in d.state.contact_log if a.attempt_id}
    assert made <= {entry.attempt_id for entry in world.ledger.entries}
    assert all(d.state.stage is not CaseStage.CLOSED or d.state.outcome for d in world.all)
