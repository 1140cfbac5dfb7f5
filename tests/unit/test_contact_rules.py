"""Contact rules: quiet hours, caps, holds and third parties, in every time zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, available_timezones

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from decisions.contact_rules import in_quiet_hours, may_contact
from decisions.policy import CapCounts, ContactRules, bundled_contact_packs, load_contact_rules
from schemas.contact import ContactAttempt, ContactChannel, ContactHolds, ContactOutcome

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


def test_reg_f_seven_calls_in_seven_days():
    week = [local(NEW_YORK, 2026, 3, 2 + d, 10, 0) for d in range(7)]
    decision = decide(
        local(NEW_YORK, 2026, 3, 8, 15, 0), rules=REG_F, zone=NEW_YORK, log=calls(*week)
    )
    assert decision.reason == "WEEKLY_CAP_REACHED"
    # First call + 7 x 24 hours; clocks went forward on 8 March, so that is 11:00 local.
    assert decision.next_allowed_at == local(NEW_YORK, 2026, 3, 9, 11, 0)


def test_reg_f_no_call_for_seven_days_after_a_conversation():
    talk = local(NEW_YORK, 2026, 3, 2, 10, 0)
    decision = decide(
        local(NEW_YORK, 2026, 3, 5, 10, 0),
        rules=REG_F,
        zone=NEW_YORK,
        log=calls(talk, outcome="answered"),
    )
    assert decision.reason == "COOLDOWN_AFTER_CONVERSATION"
    assert decision.next_allowed_at == talk.astimezone(UTC) + timedelta(days=7)  # elapsed time


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
    tz = ZoneInfo(zone)
    assert not in_quiet_hours(decision_at, tz, rules)
    local_time = decision_at.astimezone(tz).time()
    start, end = rules.quiet_hours_start, rules.quiet_hours_end
    assert end <= local_time < start  # explicit, for the packs' overnight quiet hours
    for cap in rules.caps_for(channel):
        relevant = [
            a.at
            for a in log
            if a.channel == channel
            and (cap.counts is CapCounts.ALL or a.outcome is not ContactOutcome.ANSWERED)
        ]
        if cap.per_day is not None:
            today = decision_at.astimezone(tz).date()
            assert sum(1 for at in relevant if at.astimezone(tz).date() == today) < cap.per_day
        if cap.per_7_days is not None:
            assert (
                sum(1 for at in relevant if at > decision_at - timedelta(days=7)) < cap.per_7_days
            )
        if cap.cooldown_after_conversation_days is not None:
            window = timedelta(days=cap.cooldown_after_conversation_days)
            assert not any(
                a.outcome is ContactOutcome.ANSWERED and a.at > decision_at - window
                for a in log
                if a.channel == channel
            )


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
            st.sampled_from([ContactChannel.PHONE, ContactChannel.SMS]),
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
