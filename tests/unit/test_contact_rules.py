"""Contact rules: quiet hours, caps, holds and third parties, in every time zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, available_timezones

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from decisions.contact_rules import may_contact
from decisions.policy import ContactRules, bundled_contact_packs, load_contact_rules
from schemas.contact import ContactAttempt, ContactChannel, ContactHolds, ContactOutcome
from tests.unit.contact_oracle import broken_rules

pytestmark = pytest.mark.unit

CHINA = load_contact_rules("cn-2026")
REG_F = load_contact_rules("us-reg-f")
SHANGHAI = "Asia/Shanghai"
NEW_YORK = "America/New_York"


def decide(now, *, rules=CHINA, zone=SHANGHAI, log=(), holds=None, channel="phone", **extra):
    return may_contact(
        channel=ContactChannel(channel),
        now=now,
        time_zone=zone,
        contact_log=list(log),
        holds=holds or ContactHolds(),
        rules=rules,
        **extra,
    )


def calls(*moments, outcome="unanswered", channel="phone"):
    return [ContactAttempt(channel=channel, at=m, outcome=outcome) for m in moments]


def local(zone, *args):
    return datetime(*args, tzinfo=ZoneInfo(zone))


def test_daytime_contact_is_allowed():
    assert decide(local(SHANGHAI, 2026, 3, 2, 10, 0)).allowed


def test_quiet_hours_block_until_eight_local():
    decision = decide(local(SHANGHAI, 2026, 3, 2, 22, 0))
    assert (decision.allowed, decision.reason) == (False, "QUIET_HOURS")
    assert decision.next_allowed_at == local(SHANGHAI, 2026, 3, 3, 8, 0)
    assert decide(local(SHANGHAI, 2026, 3, 2, 7, 59)).next_allowed_at == local(
        SHANGHAI, 2026, 3, 2, 8, 0
    )


def test_quiet_hours_follow_daylight_saving_time():
    # 12:30 UTC is 08:30 in New York in summer (EDT) but 07:30 in winter (EST).
    assert decide(datetime(2026, 7, 1, 12, 30, tzinfo=UTC), rules=REG_F, zone=NEW_YORK).allowed
    winter = decide(datetime(2026, 1, 15, 12, 30, tzinfo=UTC), rules=REG_F, zone=NEW_YORK)
    assert winter.reason == "QUIET_HOURS"
    assert winter.next_allowed_at == datetime(2026, 1, 15, 13, 0, tzinfo=UTC)
    # The night the clocks go forward (8 March 2026): allowed again at 08:00 EDT = 12:00 UTC.
    spring = decide(local(NEW_YORK, 2026, 3, 8, 1, 0), rules=REG_F, zone=NEW_YORK)
    assert spring.next_allowed_at == datetime(2026, 3, 8, 12, 0, tzinfo=UTC)


def test_six_unanswered_calls_a_day_then_tomorrow_morning():
    day = [local(SHANGHAI, 2026, 3, 2, 9 + h, 0) for h in range(6)]
    decision = decide(local(SHANGHAI, 2026, 3, 2, 16, 0), log=calls(*day))
    assert (decision.allowed, decision.reason) == (False, "DAILY_CAP_REACHED")
    assert decision.next_allowed_at == local(SHANGHAI, 2026, 3, 3, 8, 0)
    # Answered calls do not count towards the unanswered cap; other channels are separate.
    assert decide(local(SHANGHAI, 2026, 3, 2, 16, 0), log=calls(*day, outcome="answered")).allowed
    assert decide(local(SHANGHAI, 2026, 3, 2, 16, 0), log=calls(*day), channel="sms").allowed
    assert decide(local(SHANGHAI, 2026, 3, 2, 16, 0), log=calls(*day[:5])).allowed


def test_reg_f_seven_calls_in_seven_consecutive_days():
    # As in comment 14(b)(2)(i)-1.i: 7 calls from Monday 2 March to Sunday 8 March (the day the
    # clocks go forward); the next call is allowed on Monday 9 March, at 08:00 local.
    week = [local(NEW_YORK, 2026, 3, 2 + d, 10, 0) for d in range(7)]
    decision = decide(
        local(NEW_YORK, 2026, 3, 8, 15, 0), rules=REG_F, zone=NEW_YORK, log=calls(*week)
    )
    assert decision.reason == "WEEKLY_CAP_REACHED"
    assert decision.next_allowed_at == local(NEW_YORK, 2026, 3, 9, 8, 0)


def test_reg_f_does_not_count_calls_that_never_connected():
    week = [local(NEW_YORK, 2026, 3, 2 + d, 10, 0) for d in range(7)]
    at = local(NEW_YORK, 2026, 3, 8, 15, 0)
    assert decide(at, rules=REG_F, zone=NEW_YORK, log=calls(*week, outcome="failed")).allowed
    # An attempt whose outcome is unknown was made: it counts.
    unknown = decide(at, rules=REG_F, zone=NEW_YORK, log=calls(*week, outcome="unknown"))
    assert unknown.reason == "WEEKLY_CAP_REACHED"


def test_reg_f_counts_per_debt():
    week = [
        ContactAttempt(
            channel="phone",
            at=local(NEW_YORK, 2026, 3, 2 + d, 10, 0),
            outcome="unanswered",
            debt="L-1",
        )
        for d in range(7)
    ]
    at = local(NEW_YORK, 2026, 3, 8, 15, 0)
    assert decide(at, rules=REG_F, zone=NEW_YORK, log=week, debt="L-1").reason == (
        "WEEKLY_CAP_REACHED"
    )
    assert decide(at, rules=REG_F, zone=NEW_YORK, log=week, debt="L-2").allowed


def test_reg_f_no_call_for_seven_days_after_a_conversation_the_first_being_its_day():
    # Comment 14(b)(2)(ii)-1.ii: a conversation on Friday 14 August; no call before Friday 21.
    talk = local(NEW_YORK, 2026, 8, 14, 19, 0)
    decision = decide(
        local(NEW_YORK, 2026, 8, 17, 10, 0),
        rules=REG_F,
        zone=NEW_YORK,
        log=calls(talk, outcome="answered"),
    )
    assert decision.reason == "COOLDOWN_AFTER_CONVERSATION"
    assert decision.next_allowed_at == local(NEW_YORK, 2026, 8, 21, 8, 0)


def test_a_conversation_the_borrower_started_starts_the_quiet_days():
    inbound = ContactAttempt(
        channel="phone",
        at=local(NEW_YORK, 2026, 8, 13, 12, 0),
        outcome="answered",
        direction="inbound",
        debt="L-1",
    )
    at = local(NEW_YORK, 2026, 8, 19, 10, 0)
    blocked = decide(at, rules=REG_F, zone=NEW_YORK, log=[inbound], debt="L-1")
    assert blocked.reason == "COOLDOWN_AFTER_CONVERSATION"
    assert blocked.next_allowed_at == local(NEW_YORK, 2026, 8, 20, 8, 0)
    # An inbound call is no attempt of ours: it fills no cap.
    many = [inbound.model_copy(update={"outcome": "unanswered"})] * 10
    assert decide(local(SHANGHAI, 2026, 8, 13, 15, 0), log=many).allowed


def test_third_parties_are_never_contacted():
    decision = decide(local(SHANGHAI, 2026, 3, 2, 10, 0), recipient="third_party")
    assert decision == decision.model_copy(
        update={"allowed": False, "reason": "THIRD_PARTY_DISCLOSURE", "next_allowed_at": None}
    )


def test_disputed_and_open_ended_pause_wait_for_a_human():
    now = local(SHANGHAI, 2026, 3, 2, 10, 0)
    disputed = decide(now, holds=ContactHolds(disputed=True))
    assert (disputed.allowed, disputed.reason, disputed.next_allowed_at) == (
        False,
        "CASE_DISPUTED",
        None,
    )
    paused = decide(now, holds=ContactHolds(paused=True))
    assert (paused.reason, paused.next_allowed_at) == ("CASE_PAUSED", None)


def test_mental_health_crisis_waits_for_the_end_of_treatment():
    now = local(SHANGHAI, 2026, 3, 2, 10, 0)
    open_ended = decide(now, holds=ContactHolds(mental_health_crisis=True))
    assert (open_ended.reason, open_ended.next_allowed_at) == ("MENTAL_HEALTH_CRISIS", None)
    ends = local(SHANGHAI, 2026, 4, 2, 0, 0)
    timed = decide(
        now, holds=ContactHolds(mental_health_crisis=True, mental_health_crisis_until=ends)
    )
    assert timed.next_allowed_at == local(SHANGHAI, 2026, 4, 2, 8, 0)


def test_breathing_space_ends_then_quiet_hours_still_apply():
    now = local(SHANGHAI, 2026, 3, 2, 10, 0)
    ends = local(SHANGHAI, 2026, 5, 1, 23, 0)  # 60 days later, at night
    decision = decide(now, holds=ContactHolds(breathing_space_until=ends))
    assert decision.reason == "BREATHING_SPACE"
    assert decision.next_allowed_at == local(SHANGHAI, 2026, 5, 2, 8, 0)


def test_naive_now_is_refused():
    with pytest.raises(ValueError, match="now: must be timezone-aware"):
        decide(datetime(2026, 3, 2, 10, 0))


# --- invariant: never inside quiet hours or over a cap, in any zone -------------------------

ZONES = sorted(available_timezones() - {"Factory", "localtime"})
PACKS = [load_contact_rules(name) for name in bundled_contact_packs()]
START = datetime(2026, 1, 1, tzinfo=UTC)


def assert_within_rules(decision_at, zone, log, rules: ContactRules, channel):
    broken = broken_rules(rules, zone, log, channel=channel, at=decision_at, debt=None)
    assert not broken, broken


@settings(max_examples=300, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    rules=st.sampled_from(PACKS),
    channel=st.sampled_from(list(ContactChannel)),
    now_offset=st.integers(0, 365 * 24 * 60),
    attempts=st.lists(
        st.tuples(
            st.integers(0, 10 * 24 * 60),
            st.sampled_from(list(ContactOutcome)),
            st.sampled_from([ContactChannel.PHONE, ContactChannel.SMS, ContactChannel.EMAIL]),
        ),
        max_size=25,
    ),
)
def test_never_allows_quiet_hours_or_over_a_cap_in_any_zone(
    zone, rules, channel, now_offset, attempts
):
    now = START + timedelta(minutes=now_offset)
    log = [
        ContactAttempt(channel=ch, at=now - timedelta(minutes=ago), outcome=outcome)
        for ago, outcome, ch in attempts
    ]
    decision = decide(now, rules=rules, zone=zone, log=log, channel=channel)
    if decision.allowed:
        assert_within_rules(now, zone, log, rules, channel)
    else:
        # Blocked by a rule that lifts: the promised time is later, and is then allowed.
        assert decision.next_allowed_at is not None
        assert decision.next_allowed_at > now
        assert_within_rules(decision.next_allowed_at, zone, log, rules, channel)
        later = decide(decision.next_allowed_at, rules=rules, zone=zone, log=log, channel=channel)
        assert later.allowed
