"""The case workflow: one per loan per delinquency episode, a thin shell over the case machine.

Everything a case decides is in ``engine/`` (pure, passed through the sandbox). This module only
connects it to Temporal:

* the handlers — one signal for every inbound event, one update for every person's action
  (validated by ``engine.rules.refusal``), queries for the view and the audit trail — feed each
  message into ``engine.machine.receive``; none of them awaits anything;
* the run loop asks ``engine.planner.next_command`` what to do, carries it out as an activity,
  a local activity (the decision core) or a timer, and feeds the result back;
* search attributes are kept equal to the state's projection; long cases continue-as-new
  with their whole state;
* a staff action's credential is verified here (``staff.credentials``, with the keys the worker
  installed) before the rules see the action with its authenticated actor.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributeKey, SearchAttributeUpdate
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from decisions.clock import PolicyClock
    from decisions.policy import Policy
    from engine import commands as do
    from engine import messages as msg
    from engine.actions import Accepted, CaseAction, CaseAudit
    from engine.machine import receive
    from engine.moves import Context
    from engine.planner import next_command
    from engine.policies import shared
    from engine.rules import forbidden, refusal
    from engine.state import CaseStart, CaseState
    from engine.view import CALENDAR_DEPENDENT, case_audit, case_view, projection, projection_v1
    from schemas.case import CaseView
    from schemas.events import Event, InboundEvent, case_id
    from schemas.staff import Actor
    from staff.credentials import (
        CredentialError,
        installed_verify_keys,
        read_actor,
        verify_action,
    )
    from workflows import search_attributes as sa
    from workflows.calls import CaseContext, carry_out

BORROWER_TIME_ZONE_PATCH = "borrower-time-zone"
"""Cases read the borrower's time zone at opening (and a case opened before, in its first run
after). A run recorded before this never did: replayed, it keeps its commands and a UTC
calendar; after continue-as-new its next run reads the zone."""

EVENT_SIGNAL = "event"
ACT_UPDATE = "act"
REFUSED = "ActionRefused"
"""The case cannot take the action now (stage, state): the reason says why."""
FORBIDDEN = "ActionForbidden"
"""This staff member may not take it: no valid credential, or not within their authority."""

_ATTRIBUTE_KEYS: Mapping[str, SearchAttributeKey[Any]] = MappingProxyType(
    {**sa.BY_PROJECTION_V1, **sa.BY_PROJECTION}
)
"""Read-only: the worker loads this module once for all its cases (``worker.PASSED_THROUGH``)."""
DESK_ATTRIBUTES_PATCH = "desk-attributes"
"""Cases started before it keep the attributes they had (``projection_v1``) until they
continue as new: their histories upsert at exactly the moments they did."""
STEADY_ATTRIBUTES_PATCH = "steady-attributes"
"""Whether to upsert is decided from the state and the kind of message only, never from the
clock: the calendar-dependent values (``engine.view.CALENDAR_DEPENDENT``) are refreshed at every
timer, inbound event and ledger read, and whenever anything else changes. A replay's
``workflow.now()`` can differ from the original task's by a fraction of a second, and a
days-past-due compared with the clock then upserted on one side of midnight and not on the
other (a nondeterminism error after a worker restart). Runs recorded before it replay as they
were."""
LOCAL_CALLS_PATCH = "local-calls"
"""The ledger read and the publishing of case events are local activities: a checkpoint's timer
is one workflow task (read the ledger, publish what it decided, sleep again) instead of three,
each a replay when a burst of firings has evicted the case in between (``bench/README.md``, the
drain). A call that fails three quick tries is an outage, waited out by an activity
(``workflows.calls._locally``). Runs recorded before it call them as activities, as they did."""
ONE_MARKER_PATCH = "patches-2026-12"
"""One marker for every patch above, and for the kept timer: a run recorded with it takes all of
them. Each patch costs a run a marker and a ``TemporalChangeVersion`` upsert, and a cached run
about 10 KiB of worker memory (``bench/README.md``, engine); a new run had four. Runs recorded
before it find each of the four (or not) as they did, and wait as they did. A later patch is
decided on its own, beside this one.

The kept timer: a wait for the same moment as the last one keeps the timer already running for
it (``CaseWorkflow._wait_on_kept_timer``). Before, every message woke the run from a
``wait_condition`` whose timeout timer was then cancelled, and the next wait started a new one
for the same moment: a payment to a case in ``track`` cost a cancelled and a started timer (two
commands, two history events, the server's work for both)."""
REFRESHED_BY = (msg.Tick, msg.LedgerRead, Event)
"""The messages after which the calendar-dependent attributes are upserted whatever they hold."""
MIN_TIMER = timedelta(milliseconds=1)


@workflow.defn(name="CaseWorkflow")
class CaseWorkflow:
    @workflow.init
    def __init__(self, start: CaseStart) -> None:
        if start.carried is not None:
            self._state = start.carried
            self._state.run_count += 1
        else:
            self._state = CaseState(
                case_id=case_id(start.loan_id, start.delinquent_since),
                loan_id=start.loan_id,
                delinquent_since=start.delinquent_since,
                opened_at=workflow.now(),
            )
        self._policy: Policy | None = None  # loaded by the first command of every run
        self._event_limit = start.continue_as_new_after_events
        self._changes = 0
        self._upserted: int | None = None  # the value of ``_changes`` the attributes reflect
        self._attributes: dict[str, Any] = {}
        # Decided once, first thing in every run, so the markers sit at the same place in its
        # history however the run's handlers and commands interleave later.
        if workflow.patched(ONE_MARKER_PATCH):
            self._desk_attributes = self._steady = self._local_calls = True
            self._state.borrower_calendar = self._kept_timer = True
        else:
            self._desk_attributes = workflow.patched(DESK_ATTRIBUTES_PATCH)
            self._state.borrower_calendar = workflow.patched(BORROWER_TIME_ZONE_PATCH)
            self._steady = workflow.patched(STEADY_ATTRIBUTES_PATCH)
            self._local_calls = workflow.patched(LOCAL_CALLS_PATCH)
            self._kept_timer = False
        # The kept timer (``ONE_MARKER_PATCH``): the one running for ``_timer_until``, and whether
        # it has fired. A bare timer handle: a task sleeping in each cached case would cost more.
        self._timer: asyncio.TimerHandle | None = None
        self._timer_until: datetime | None = None
        self._timer_clock: PolicyClock | None = None  # the clock ``_timer_until`` was mapped with
        self._timer_fired = False

    # --- the run loop ------------------------------------------------------------------------

    @workflow.run
    async def run(self, start: CaseStart) -> CaseView:
        while True:
            command = next_command(self._state, self._context())
            if isinstance(command, do.Finish):
                self._stop_timer()
                break
            if isinstance(command, do.Wait):
                await self._wait(command)
            else:
                self._feed(await self._carry_out(command))
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.view()

    async def _wait(self, command: do.Wait) -> None:
        info = workflow.info()
        if (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() > self._event_limit
        ):
            await workflow.wait_condition(workflow.all_handlers_finished)
            self._stop_timer()
            workflow.continue_as_new(
                CaseStart(
                    loan_id=self._state.loan_id,
                    delinquent_since=self._state.delinquent_since,
                    continue_as_new_after_events=self._event_limit,
                    carried=self._state,
                )
            )
        if self._upserted != self._changes:
            self._upsert()
        if self._kept_timer:
            await self._wait_on_kept_timer(command.until)
            return
        seen = self._changes
        timeout = None
        if command.until is not None:
            delay = command.until - self._now()
            if self._steady:
                # Always a timer, however close or past the moment: whether one is started must
                # not hang on a clock comparison a replay may see differently.
                timeout = max(self._server_delay(delay), MIN_TIMER)
            elif delay <= timedelta(0):
                self._feed(msg.Tick())
                return
            else:
                timeout = self._server_delay(delay)
        try:
            await workflow.wait_condition(lambda: self._changes != seen, timeout=timeout)
        except TimeoutError:
            self._feed(msg.Tick())

    async def _wait_on_kept_timer(self, until: datetime | None) -> None:
        """Until a message, or until ``until`` (policy time) has come: then a ``Tick``, also when
        it came while the run was busy since the last wait (the timer ran on meanwhile)."""
        seen = self._changes
        self._keep_timer_for(until)
        await workflow.wait_condition(lambda: self._changes != seen or self._timer_fired)
        if self._timer_fired:
            self._stop_timer()  # fired: nothing to cancel, only forgotten
            self._feed(msg.Tick())

    def _keep_timer_for(self, until: datetime | None) -> None:
        """The running timer if it is for ``until``, else a new one (always a timer, however close
        or past the moment: see ``STEADY_ATTRIBUTES_PATCH``); none for ``until`` None."""
        if (
            self._timer is not None
            and until == self._timer_until
            and self._state.clock == self._timer_clock
        ):
            return
        self._stop_timer()
        if until is None:
            return
        delay = max(self._server_delay(until - self._now()), MIN_TIMER)
        self._timer = asyncio.get_running_loop().call_later(delay.total_seconds(), self._on_timer)
        self._timer_until, self._timer_clock = until, self._state.clock

    def _on_timer(self) -> None:
        self._timer_fired = True

    def _stop_timer(self) -> None:
        if self._timer is not None and not self._timer_fired:
            self._timer.cancel()
        self._timer, self._timer_fired = None, False

    # --- handlers ----------------------------------------------------------------------------

    @workflow.signal(name=EVENT_SIGNAL)
    def receive(self, event: InboundEvent) -> None:
        self._feed(event)

    @workflow.update(name=ACT_UPDATE)
    async def act(self, action: CaseAction) -> Accepted:
        # Verified by the validator when it arrived; read again on replay without the keys.
        actor = read_actor(action.credential)
        if self._policy is None and self._state.attention is None:
            # The first moments of a new run (after continue-as-new): its policy is loading.
            # (Not when loading it failed: the case waits for an operator's retry.)
            await workflow.wait_condition(
                lambda: self._policy is not None or self._state.attention is not None
            )
            self._refuse_unfit(action, actor)  # the checks that need the policy, now
        detail = self._feed(action, actor)
        return Accepted(stage=self._state.stage, detail=detail)

    @act.validator
    def _refuse_invalid(self, action: CaseAction) -> None:
        actor: Actor | None = None
        if action.credential is not None:
            try:
                actor = verify_action(
                    installed_verify_keys(),
                    action.credential,
                    self._state.case_id,
                    action,
                    workflow.now(),
                )
            except CredentialError as error:
                raise ApplicationError(
                    f"{action.action}: {error}", type=FORBIDDEN, non_retryable=True
                ) from None
        self._refuse_unfit(action, actor)

    def _refuse_unfit(self, action: CaseAction, actor: Actor | None) -> None:
        # Who may act first (the desk answers 403), then whether the case can take it now.
        reason = forbidden(self._state, action, self._policy, actor)
        if reason is not None:
            raise ApplicationError(reason, type=FORBIDDEN, non_retryable=True)
        reason = refusal(self._state, action, self._policy, self._now(), actor)
        if reason is not None:
            raise ApplicationError(reason, type=REFUSED, non_retryable=True)

    @workflow.query(name="view")
    def view(self) -> CaseView:
        return case_view(self._state, self._policy, self._now())

    @workflow.query(name="audit")
    def audit(self) -> CaseAudit:
        return case_audit(self._state)

    @workflow.query(name="applied_event_ids")
    def applied_event_ids(self) -> list[str]:
        return sorted(self._state.applied_event_ids)

    # --- carrying out commands ---------------------------------------------------------------

    async def _carry_out(self, command: do.Command) -> object:
        state = self._state
        context = CaseContext(
            state.case_id, state.loan_id, self._policy, state.clock, self._local_calls
        )
        message = await carry_out(command, context)
        if isinstance(message, msg.PolicyLoaded):
            self._policy = shared(message.policy)
        return message

    # --- state ---------------------------------------------------------------------------------

    def _feed(self, message: object, actor: Actor | None = None) -> str:
        detail = receive(self._state, message, self._context(actor))
        self._changes += 1
        self._upsert(refresh=isinstance(message, REFRESHED_BY))
        return detail

    def _context(self, actor: Actor | None = None) -> Context:
        return Context(
            policy=self._policy,
            now=self._now(),
            actor=actor.staff_id if actor is not None else None,
        )

    def _now(self) -> datetime:
        """The case's clock: the server's, unless a simulation compressed the case's time."""
        now = workflow.now()
        clock = self._state.clock
        return now if clock is None else clock.policy_time(now)

    def _server_delay(self, policy_delay: timedelta) -> timedelta:
        clock = self._state.clock
        return policy_delay if clock is None else clock.server_delay(policy_delay)

    def _upsert(self, refresh: bool = False) -> None:
        """Keep the search attributes equal to the state; only changes go to history (and the
        calendar-dependent values at the points ``STEADY_ATTRIBUTES_PATCH`` names).

        They are a function of the state, the policy and the task's clock. State and policy change
        only through ``_feed``, and the run loop reaches ``_wait`` in the same workflow task as
        the feed before it, so a second call before the next feed would write nothing."""
        self._upserted = self._changes
        if not self._desk_attributes:
            self._upsert_v1()
            return
        # Compared with what the case holds now (carried over a continue-as-new too): an
        # attribute never set is not unset, and only what changed is written.
        current = {pair.key: pair.value for pair in workflow.info().typed_search_attributes}
        updates: list[SearchAttributeUpdate[Any]] = []
        calendar: list[SearchAttributeUpdate[Any]] = []
        for name, value in vars(projection(self._state, self._policy, self._now())).items():
            key = _ATTRIBUTE_KEYS[name]
            empty = value is None or value == []
            if self._steady and name in CALENDAR_DEPENDENT:
                calendar.append(key.value_unset() if empty else key.value_set(value))
                continue
            held = current.get(key)
            if empty:
                if held is not None:
                    updates.append(key.value_unset())
            elif held != value:
                updates.append(key.value_set(value))
        if updates or refresh:
            updates += calendar
        if updates:
            workflow.upsert_search_attributes(updates)

    def _upsert_v1(self) -> None:
        """Cases started before the desk's attributes: exactly as they upserted then."""
        updates: list[SearchAttributeUpdate[Any]] = []
        for name, value in vars(projection_v1(self._state, self._policy)).items():
            if self._attributes.get(name, "unset") == value:
                continue
            self._attributes[name] = value
            key = _ATTRIBUTE_KEYS[name]
            updates.append(key.value_unset() if value is None else key.value_set(value))
        if updates:
            workflow.upsert_search_attributes(updates)


__all__ = ["ACT_UPDATE", "EVENT_SIGNAL", "FORBIDDEN", "REFUSED", "CaseStart", "CaseWorkflow"]
