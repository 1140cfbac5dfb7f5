"""Which action is allowed when, and why not: the rules of the case, read top to bottom.

``refusal(state, action, policy, now)`` is the update validator: ``None`` means the action may be
applied; anything else is the one-line reason the caller is told. It never changes the state.

The stages a case moves through, and what people may do in each:

======================  ============================================================
stage                   actions (besides the ones allowed in every open stage)
======================  ============================================================
collect_info            submit_financials
assess                  situation_changed (a newer profile restarts the assessment)
propose                 approve / reject (options waiting for approval), and once the
                        offer is open: choose_option, counter_propose, decline;
                        situation_changed
sign                    sign (the provider's callback), decline, situation_changed
track                   situation_changed
closed                  nothing: a closed case is history
======================  ============================================================

In every open stage: pause / resume, breathing_space, mental_health_crisis / treatment_ended,
dispute / resolve_dispute, note, record_contact, assign, and retry (when the case waits for a
human).

Who may act: a staff action (``engine.actions.STAFF_ACTIONS``) needs an authenticated ``actor``
(verified by the workflow from the action's credential) whose staff id is the one the action
names; approving or rejecting needs the authority the policy gives the actor's role
(``ApprovalPolicy.role_authority``) — never what the caller says it has.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

from decisions.local_days import DEFAULT_ZONE, local_date, start_of_day
from decisions.policy import Policy
from engine.actions import (
    STAFF_ACTIONS,
    Approve,
    Assign,
    CaseAction,
    ChooseOption,
    CounterPropose,
    Decline,
    Dispute,
    Note,
    Pause,
    RecordContact,
    Reject,
    ResolveDispute,
    Resume,
    Retry,
    Sign,
    SituationChanged,
    StartBreathingSpace,
    StartMentalHealthCrisis,
    SubmitFinancials,
    TreatmentEnded,
    named_staff,
)
from engine.state import CaseState
from schemas.assessment import FinancialProfile
from schemas.case import CaseStage
from schemas.plan import ApprovalAuthority, PlanOption
from schemas.staff import Actor

OPEN_STAGES = frozenset(CaseStage) - {CaseStage.CLOSED}

STAGES_FOR: dict[str, frozenset[CaseStage]] = {
    "submit_financials": frozenset({CaseStage.COLLECT_INFO}),
    "choose_option": frozenset({CaseStage.PROPOSE}),
    "counter_propose": frozenset({CaseStage.PROPOSE}),
    "decline": frozenset({CaseStage.PROPOSE, CaseStage.SIGN}),
    "sign": frozenset({CaseStage.SIGN}),
    "situation_changed": frozenset(
        {CaseStage.ASSESS, CaseStage.PROPOSE, CaseStage.SIGN, CaseStage.TRACK}
    ),
    "approve": frozenset({CaseStage.PROPOSE}),
    "reject": frozenset({CaseStage.PROPOSE}),
    "pause": OPEN_STAGES,
    "resume": OPEN_STAGES,
    "breathing_space": OPEN_STAGES,
    "dispute": OPEN_STAGES,
    "resolve_dispute": OPEN_STAGES,
    "note": OPEN_STAGES,
    "assign": OPEN_STAGES,
    "retry": OPEN_STAGES,
    "mental_health_crisis": OPEN_STAGES,
    "treatment_ended": OPEN_STAGES,
    "record_contact": OPEN_STAGES,
}


def refusal(
    state: CaseState,
    action: CaseAction,
    policy: Policy | None,
    now: datetime,
    actor: Actor | None = None,
) -> str | None:
    """Why ``action`` cannot be applied to the case now, or None if it can. ``actor``: the
    staff member the action's credential was verified for (None: no credential)."""
    name = action.action
    if (reason := forbidden(state, action, policy, actor)) is not None:
        return reason
    if state.closed:
        assert state.outcome is not None and state.closed_at is not None
        return f"{name}: the case is closed ({state.outcome.value} on {state.closed_at:%Y-%m-%d})"
    stuck_opening = name == "retry" and state.attention is not None
    if not state.stages and not stuck_opening:
        return f"{name}: the case is still opening; try again shortly"
    allowed = STAGES_FOR[name]
    if state.stage not in allowed:
        stages = ", ".join(sorted(stage.value for stage in allowed))
        return f"{name}: only in stage {stages}; the case is in {state.stage.value}"
    if isinstance(action, Approve | Reject):
        return _approval(state, name, action.option_ids)
    check = _CHECKS.get(type(action))
    return check(state, action, policy, now) if check is not None else None


def forbidden(
    state: CaseState, action: CaseAction, policy: Policy | None, actor: Actor | None
) -> str | None:
    """Why this staff member may not take ``action`` whatever the case's stage, or None: a
    staff action must come from the signed-in staff member it names, and approving or
    rejecting an option needs the authority the policy gives the actor's role."""
    name = action.action
    if name not in STAFF_ACTIONS:
        return None
    if actor is None:
        return (
            f"{name}: a staff action needs a signed-in staff member "
            "(the desk, `accord login`, or an administrator's key)"
        )
    named = named_staff(action)
    if named is not None and named != actor.staff_id:
        return f"{name}: it names {named}, but the signed-in staff member is {actor.staff_id}"
    if isinstance(action, Approve | Reject) and policy is not None and state.proposal is not None:
        granted = policy.approval.granted_to(actor.role)
        offered = {option.option_id: option for option in state.proposal.offered}
        for option_id in action.option_ids:
            option = offered.get(option_id)
            if option is not None and granted.level < option.required_authority.level:
                return (
                    f"{name}: {option_id} needs {option.required_authority.value} authority; "
                    f"{actor.staff_id} ({actor.role.value}) has {granted.value}"
                )
    return None


# --- borrower actions ------------------------------------------------------------------------


def _submit_financials(state: CaseState, action: SubmitFinancials, *_: Any) -> str | None:
    return _currency(state, "submit_financials", action.profile)


def _choose_option(state: CaseState, action: ChooseOption, *_: Any) -> str | None:
    if (reason := _offer_not_open(state, "choose_option")) is not None:
        return reason
    available = [option.option_id for option in available_options(state)]
    if action.option_id not in available:
        return (
            f"choose_option: {action.option_id!r} is not on offer (offered: {', '.join(available)})"
        )
    return None


def _counter_propose(
    state: CaseState, action: CounterPropose, policy: Policy | None, *_: Any
) -> str | None:
    if (reason := _offer_not_open(state, "counter_propose")) is not None:
        return reason
    if (reason := _currency(state, "counter_propose", action.profile)) is not None:
        return reason
    if policy is None:
        return None  # a new run is loading it: the update waits for it and asks again
    limit = policy.durations.max_counter_proposals
    if state.counter_rounds >= limit:
        return f"counter_propose: the limit of {limit} counter-proposals is reached"
    return None


def _decline(state: CaseState, action: Decline, *_: Any) -> str | None:
    if state.stage is CaseStage.PROPOSE:
        return _offer_not_open(state, "decline")
    return None


def _sign(state: CaseState, action: Sign, *_: Any) -> str | None:
    signature = state.signature
    if signature is None or signature.envelope_id is None:
        return "sign: no agreement has been sent for signature yet; try again shortly"
    if action.envelope_id != signature.envelope_id:
        return f"sign: {action.envelope_id!r} is not the envelope this case is waiting for"
    if signature.signed_at is not None:
        return "sign: the signature is already confirmed"
    return None


def _situation_changed(state: CaseState, action: SituationChanged, *_: Any) -> str | None:
    return _currency(state, "situation_changed", action.profile)


# --- staff actions ---------------------------------------------------------------------------


def _pause(state: CaseState, action: Pause, _: Policy, now: datetime) -> str | None:
    if state.holds.paused:
        return "pause: the case is already paused"
    if action.until is not None and action.until <= now:
        return "pause: until is in the past"
    return None


def _resume(state: CaseState, action: Resume, *_: Any) -> str | None:
    holds = state.holds
    if holds.paused:
        return None
    if holds.disputed:
        return "resume: the case is disputed; use resolve_dispute"
    if holds.breathing_space_until is not None:
        return "resume: a breathing space ends by itself; it cannot be resumed"
    if holds.mental_health_crisis:
        return "resume: a mental-health crisis moratorium ends after treatment_ended is recorded"
    return "resume: the case is not paused"


def _breathing_space(
    state: CaseState, action: StartBreathingSpace, policy: Policy, now: datetime
) -> str | None:
    if state.holds.breathing_space_until is not None:
        return "breathing_space: a breathing space is already running"
    if (reason := _first_day(state, "breathing_space", action.starts_on, now)) is not None:
        return reason
    first = moratorium_first_day(state, action.starts_on, now)
    if breathing_space_end(state, first, policy, now) <= now:
        return f"breathing_space: starting on {first} it would already be over"
    return None


def _mental_health_crisis(
    state: CaseState, action: StartMentalHealthCrisis, policy: Policy, now: datetime
) -> str | None:
    if state.holds.mental_health_crisis:
        return "mental_health_crisis: a mental-health crisis moratorium is already in force"
    return _first_day(state, "mental_health_crisis", action.starts_on, now)


def _treatment_ended(
    state: CaseState, action: TreatmentEnded, policy: Policy, now: datetime
) -> str | None:
    holds = state.holds
    if not holds.mental_health_crisis:
        return "treatment_ended: no mental-health crisis moratorium is in force"
    if holds.treatment_ended_on is not None:
        recorded = holds.treatment_ended_on
        return f"treatment_ended: the end of treatment is already recorded ({recorded})"
    today = local_date(now, borrower_zone(state))
    if action.ended_on > today:
        return f"treatment_ended: ended_on {action.ended_on} is after today ({today})"
    started = holds.mental_health_crisis_from
    if started is not None and action.ended_on < started - timedelta(days=1):
        return f"treatment_ended: ended_on {action.ended_on} is before the moratorium ({started})"
    return None


def _record_contact(
    state: CaseState, action: RecordContact, policy: Policy, now: datetime
) -> str | None:
    if action.at is not None and action.at > now:
        return "record_contact: at is in the future"
    return None


def _dispute(state: CaseState, action: Dispute, *_: Any) -> str | None:
    if state.holds.disputed:
        return "dispute: the case is already disputed"
    return None


def _resolve_dispute(state: CaseState, action: ResolveDispute, *_: Any) -> str | None:
    if not state.holds.disputed:
        return "resolve_dispute: the case is not disputed"
    return None


def _retry(state: CaseState, action: Retry, *_: Any) -> str | None:
    if state.attention is None:
        return "retry: the case is not waiting for anyone"
    return None


def _assign(state: CaseState, action: Assign, *_: Any) -> str | None:
    if action.assignee == state.assigned_to:
        return f"assign: the case is already assigned to {action.assignee or 'nobody'}"
    return None


def _note(state: CaseState, action: Note, *_: Any) -> str | None:
    return None


_CHECKS: dict[type, Callable[..., str | None]] = {
    SubmitFinancials: _submit_financials,
    ChooseOption: _choose_option,
    CounterPropose: _counter_propose,
    Decline: _decline,
    Sign: _sign,
    SituationChanged: _situation_changed,
    Pause: _pause,
    Resume: _resume,
    StartBreathingSpace: _breathing_space,
    Dispute: _dispute,
    ResolveDispute: _resolve_dispute,
    Retry: _retry,
    Assign: _assign,
    Note: _note,
    StartMentalHealthCrisis: _mental_health_crisis,
    TreatmentEnded: _treatment_ended,
    RecordContact: _record_contact,
}


# --- shared checks and facts the machine uses too --------------------------------------------


def borrower_zone(state: CaseState) -> str:
    """The borrower's zone (UTC for a case that has not learned it yet)."""
    return state.time_zone or DEFAULT_ZONE


def moratorium_first_day(state: CaseState, starts_on: date | None, now: datetime) -> date:
    """A moratorium starts the day after its register entry: tomorrow unless staff say."""
    if starts_on is not None:
        return starts_on
    return local_date(now, borrower_zone(state)) + timedelta(days=1)


def breathing_space_end(
    state: CaseState, first_day: date, policy: Policy, now: datetime
) -> datetime:
    """The instant the breathing space's last day is over (``first_day`` is day 1). A run
    recorded before cases kept the borrower's calendar held it N x 24 h from ``now``."""
    days = policy.contact.breathing_space_days
    if not state.borrower_calendar:
        return now + timedelta(days=days)
    return start_of_day(first_day + timedelta(days=days), borrower_zone(state))


def mental_health_crisis_end(state: CaseState, ended_on: date, policy: Policy) -> datetime:
    """The instant the moratorium is over: the pack's days from the day after treatment ended."""
    days = policy.contact.mental_health_crisis_extra_days
    return start_of_day(ended_on + timedelta(days=1 + days), borrower_zone(state))


def _first_day(state: CaseState, name: str, starts_on: date | None, now: datetime) -> str | None:
    if starts_on is None:
        return None
    tomorrow = local_date(now, borrower_zone(state)) + timedelta(days=1)
    if starts_on > tomorrow:
        return (
            f"{name}: starts_on {starts_on} is after tomorrow ({tomorrow}); a moratorium starts "
            "the day after its register entry"
        )
    return None


def offer_is_open(state: CaseState) -> bool:
    return state.stage is CaseStage.PROPOSE and state.offer is not None


def available_options(state: CaseState) -> list[PlanOption]:
    """The options the borrower may choose: not withdrawn, approved where approval is needed."""
    if state.proposal is None:
        return []
    return [
        option
        for option in state.proposal.offered
        if option.option_id not in state.withdrawn
        and (
            option.required_authority is ApprovalAuthority.AUTOMATIC
            or option.option_id in state.approved
        )
    ]


def _offer_not_open(state: CaseState, name: str) -> str | None:
    if not offer_is_open(state):
        return f"{name}: no offer is open yet (waiting for options or approval)"
    return None


def _currency(state: CaseState, name: str, profile: FinancialProfile) -> str | None:
    if state.loan is not None and profile.currency != state.loan.currency:
        return (
            f"{name}: profile.currency is {profile.currency}, "
            f"but the loan is in {state.loan.currency}"
        )
    return None


def _approval(state: CaseState, name: str, option_ids: tuple[str, ...]) -> str | None:
    pending = state.approval
    if pending is None:
        return f"{name}: nothing is waiting for approval"
    unknown = [option_id for option_id in option_ids if option_id not in pending.option_ids]
    if unknown:
        return f"{name}: {', '.join(unknown)} not waiting for approval"
    return None
