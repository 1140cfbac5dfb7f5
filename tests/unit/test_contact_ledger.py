"""The borrower's contact ledger, pure: interleaved attempts from several cases and episodes of
one borrower, answered or not, with inbound conversations and holds, judged against each pack's
rules as ``tests/unit/contact_oracle.py`` writes them, in the borrower's calendar days across
DST changes."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from decisions.contact_ledger import (
    RETENTION,
    AttemptRequest,
    Interaction,
    LedgerState,
    OutcomeReport,
    record_interaction,
    record_outcome,
    request_attempt,
)
from decisions.policy import bundled_contact_packs, load_contact_rules
from schemas.contact import ContactChannel, ContactHolds, ContactOutcome, Direction
from tests.unit.contact_oracle import broken_rules

pytestmark = pytest.mark.unit

PACKS = {name: load_contact_rules(name) for name in bundled_contact_packs()}
PACK_NAMES = tuple(sorted(PACKS))
DST_ZONES = [
    "America/New_York",  # 8 March / 1 November 2026
    "Europe/London",  # 29 March / 25 October
    "Australia/Sydney",  # 5 April / 4 October
    "America/Havana",  # its clocks skip midnight itself
    "America/Santiago",
    "Pacific/Chatham",  # a 45-minute offset
    "Asia/Shanghai",  # no DST
]
STARTS = [  # a few days before a change somewhere
    datetime(2026, 3, 5, tzinfo=UTC),
    datetime(2026, 3, 26, tzinfo=UTC),
    datetime(2026, 4, 2, tzinfo=UTC),
    datetime(2026, 9, 3, tzinfo=UTC),
    datetime(2026, 10, 1, tzinfo=UTC),
    datetime(2026, 10, 22, tzinfo=UTC),
    datetime(2026, 10, 29, tzinfo=UTC),
]
OUTCOMES = {
    ContactChannel.PHONE: [
        ContactOutcome.ANSWERED,
        ContactOutcome.UNANSWERED,
        ContactOutcome.FAILED,
        ContactOutcome.UNKNOWN,
    ],
    ContactChannel.SMS: [ContactOutcome.DELIVERED, ContactOutcome.FAILED, ContactOutcome.UNKNOWN],
    ContactChannel.EMAIL: [ContactOutcome.DELIVERED, ContactOutcome.UNKNOWN],
}


def ask(
    state: LedgerState,
    *,
    attempt_id: str,
    debt: str,
    at: datetime,
    zone: str,
    pack: str = "cn-2026",
    channel: ContactChannel = ContactChannel.PHONE,
    holds: ContactHolds | None = None,
):
    return request_attempt(
        state,
        AttemptRequest(
            attempt_id=attempt_id,
            case_id=f"case-{debt}",
            debt=debt,
            channel=channel,
            at=at,
            time_zone=zone,
            holds=holds or ContactHolds(),
            rules=PACKS[pack],
        ),
    )


# --- the ledger's own behaviour --------------------------------------------------------------


def test_a_granted_attempt_is_recorded_at_once_and_counts_while_its_outcome_is_unknown():
    state = LedgerState(borrower_id="B-1")
    at = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # 10:00 Shanghai
    for n in range(6):
        assert ask(state, attempt_id=f"a{n}", debt="L-1", at=at, zone="Asia/Shanghai").allowed
    assert [e.outcome for e in state.entries] == [ContactOutcome.UNKNOWN] * 6
    refused = ask(state, attempt_id="a6", debt="L-2", at=at, zone="Asia/Shanghai")
    assert refused.reason == "DAILY_CAP_REACHED"
    # An answer reported later frees its place under the unanswered-calls cap.
    assert record_outcome(state, OutcomeReport(attempt_id="a0", outcome="answered"))
    assert ask(state, attempt_id="a7", debt="L-2", at=at, zone="Asia/Shanghai").allowed


def test_the_same_attempt_asked_again_is_granted_once():
    state = LedgerState(borrower_id="B-1")
    at = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
    for _ in range(3):
        assert ask(state, attempt_id="a1", debt="L-1", at=at, zone="Asia/Shanghai").allowed
    assert len(state.entries) == 1 and state.granted == 1


def test_the_first_final_outcome_stands_and_unknown_never_overrides():
    state = LedgerState(borrower_id="B-1")
    at = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
    ask(state, attempt_id="a1", debt="L-1", at=at, zone="Asia/Shanghai")
    assert not record_outcome(state, OutcomeReport(attempt_id="a1", outcome="unknown"))
    assert record_outcome(state, OutcomeReport(attempt_id="a1", outcome="unanswered"))
    assert not record_outcome(state, OutcomeReport(attempt_id="a1", outcome="answered"))
    assert not record_outcome(state, OutcomeReport(attempt_id="nope", outcome="answered"))
    assert state.entries[0].outcome is ContactOutcome.UNANSWERED


def test_an_interaction_is_recorded_once_and_old_contacts_are_forgotten():
    state = LedgerState(borrower_id="B-1")
    at = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
    call = Interaction(
        interaction_id="cc-1",
        debt="L-1",
        channel="phone",
        direction="inbound",
        conversation=True,
        at=at,
    )
    assert record_interaction(state, call)
    assert not record_interaction(state, call)
    later = at + RETENTION + timedelta(minutes=1)
    ask(state, attempt_id="a1", debt="L-1", at=later, zone="Asia/Shanghai")
    assert [e.attempt_id for e in state.entries] == ["a1"]


# --- property: interleaved cases and episodes of one borrower --------------------------------


@st.composite
def borrower_history(draw, packs=PACK_NAMES, channels=None, days=(4, 9), answered=True):
    """Cases (a loan and an episode each, with its holds) and what happens, in time order."""
    pack = draw(st.sampled_from(packs))
    zone = draw(st.sampled_from(DST_ZONES))
    start = draw(st.sampled_from(STARTS)) + timedelta(hours=draw(st.integers(0, 23)))
    loans = [f"L-{n}" for n in range(draw(st.integers(1, 3)))]
    cases = []
    for index in range(draw(st.integers(1, 4))):
        loan = loans[index % len(loans)]
        holds = draw(st.sampled_from(["none"] * 7 + ["breathing_space", "paused", "crisis"]))
        until = start + timedelta(hours=draw(st.integers(1, 24 * 6)))
        cases.append(
            (
                loan,
                {
                    "none": ContactHolds(),
                    "breathing_space": ContactHolds(breathing_space_until=until),
                    "paused": ContactHolds(paused=True, paused_until=until),
                    "crisis": ContactHolds(mental_health_crisis=True),
                }[holds],
            )
        )
    # Mostly in the borrower's daytime, so that the caps (not quiet hours) are what is tested.
    daytime = st.builds(
        lambda day, minute: day * 24 * 60 + minute,
        st.integers(0, days[0]) | st.integers(0, days[1]),
        st.integers(7 * 60, 22 * 60),
    )
    steps = draw(
        st.lists(
            st.tuples(
                st.one_of(daytime, daytime, st.integers(0, 9 * 24 * 60)),  # minutes
                st.sampled_from(["attempt"] * 6 + ["inbound", "retry"]),
                st.integers(0, 3),  # which case (attempt) or loan (inbound)
                st.sampled_from(channels or [ContactChannel.PHONE] * 4 + list(OUTCOMES)),
                st.integers(0, 3),  # which outcome
                st.booleans(),  # inbound: a conversation?
            ),
            min_size=30,
            max_size=100,
        )
    )
    if not answered:  # no conversation: the calls pile up against the counts
        steps = [(*step[:4], 1, False) for step in steps]
    return pack, zone, start, loans, cases, sorted(steps)


@settings(max_examples=150, deadline=None)
@given(borrower_history())
def test_interleaved_cases_and_episodes_never_break_a_pack(history):
    check_ledger_against_the_rules(*history)


@settings(max_examples=60, deadline=None)
@given(borrower_history(packs=("us-reg-f",), channels=[ContactChannel.PHONE], days=(8, 13)))
def test_reg_f_calls_per_debt_over_a_fortnight(history):
    """Reg F's 7 consecutive days at their edges: unanswered calls over two weeks."""
    check_ledger_against_the_rules(*history)


def check_ledger_against_the_rules(pack, zone, start, loans, cases, steps):
    rules = PACKS[pack]
    state = LedgerState(borrower_id="B-1")
    last_id: str | None = None
    first_day = start.astimezone(ZoneInfo(zone)).date()
    for number, (minute, kind, which, channel, outcome_index, conversation) in enumerate(steps):
        # Minutes of the borrower's wall clock from the start of their first day.
        wall = datetime.combine(first_day, time(0)) + timedelta(minutes=minute)
        at = wall.replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)
        if kind == "inbound":
            record_interaction(
                state,
                Interaction(
                    interaction_id=f"in-{number}",
                    debt=loans[which % len(loans)],
                    channel=channel,
                    direction=Direction.INBOUND,
                    conversation=conversation,
                    at=at,
                ),
            )
            continue
        if kind == "retry" and last_id is not None:
            before = len(state.entries)
            decision = ask(state, attempt_id=last_id, debt="L-0", at=at, zone=zone, pack=pack)
            assert decision.allowed and len(state.entries) == before
            continue
        debt, holds = cases[which % len(cases)]
        before = list(state.entries)
        attempt_id = f"case-{which}-a{number}-{channel.value}"
        decision = ask(
            state,
            attempt_id=attempt_id,
            debt=debt,
            at=at,
            zone=zone,
            pack=pack,
            channel=channel,
            holds=holds,
        )
        broken = broken_rules(
            rules, zone, before, channel=channel.value, at=at, debt=debt, holds=holds
        )
        event(f"{pack}: {decision.reason or 'granted'}")
        if decision.allowed:
            assert not broken, f"granted {attempt_id} at {at} though {broken}"
            last_id = attempt_id
            outcomes = OUTCOMES[channel]
            final = outcomes[outcome_index % len(outcomes)]
            record_outcome(state, OutcomeReport(attempt_id=attempt_id, outcome=final))
            continue
        assert broken, f"refused {attempt_id} ({decision.reason}) though no rule forbids it"
        promised = decision.next_allowed_at
        if promised is not None:
            # The promise holds (on the same log), and it is the earliest (to the minute).
            assert not broken_rules(
                rules, zone, before, channel=channel.value, at=promised, debt=debt, holds=holds
            )
            assert broken_rules(
                rules,
                zone,
                before,
                channel=channel.value,
                at=promised - timedelta(minutes=1),
                debt=debt,
                holds=holds,
            )
    # The whole log, replayed in time order (the steps were): each attempt within every rule.
    entries = sorted(state.entries, key=lambda entry: entry.at)
    for index, entry in enumerate(entries):
        if entry.direction is Direction.OUTBOUND:
            assert not broken_rules(
                rules,
                zone,
                entries[:index],
                channel=entry.channel.value,
                at=entry.at,
                debt=entry.debt,
            ), entry
