"""Drives the pure case machine the way the workflow does, with the outside world scripted:
every command answered at once (the real decision core decides), time moved by hand.

No server, no Temporal: a whole case in milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from decisions.contact_ledger import (
    AttemptRequest,
    LedgerState,
    OutcomeReport,
    record_interaction,
    record_outcome,
    request_attempt,
)
from decisions.plans import issue_agreement, propose
from decisions.policy import Policy, load_policy
from decisions.tiering import assess
from engine import commands as do
from engine import messages as msg
from engine.actions import (
    STAFF_ACTIONS,
    CaseAction,
    ChooseOption,
    Sign,
    SubmitFinancials,
    named_staff,
)
from engine.machine import receive
from engine.moves import Context
from engine.planner import next_command
from engine.rules import refusal
from engine.state import CaseState
from schemas.assessment import CreditRecord, FinancialProfile
from schemas.case import CaseStage
from schemas.contact import ContactAttempt, ContactDecision, ContactOutcome
from schemas.events import Event, LoanOverdue
from schemas.staff import Actor, StaffRole
from tests import factories

POLICY = load_policy()
T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai: no quiet hours


def loan(**overrides: Any) -> LoanOverdue:
    return factories.loan(occurred_at=T0 - timedelta(hours=1), **overrides)


def borrower(**overrides: Any) -> FinancialProfile:
    """Temporary hardship, recovery in six months: options exist for the default loan."""
    return factories.profile(**{"temporary": True, "expected_recovery_months": 6, **overrides})


class Refused(Exception):
    pass


@dataclass
class Driver:
    """One case and the world around it."""

    loan: LoanOverdue = field(default_factory=loan)
    policy: Policy = POLICY
    credit: CreditRecord = field(default_factory=CreditRecord)
    now: datetime = T0
    paid_total: Decimal = Decimal(0)
    contact_outcome: ContactOutcome = ContactOutcome.DELIVERED
    contact_blocked_until: datetime | None = None
    signature_state: str = "signed"
    policy_in_memory: bool = True
    """False after a continue-as-new: the new run loads the policy in force first."""
    fail: set[type] = field(default_factory=set)
    """Command types that fail for good when asked."""
    time_zone: str = "Asia/Shanghai"
    ledger: LedgerState | None = None
    """The borrower's contact ledger (shared by the drivers of one borrower's cases): every
    attempt is asked of it, as the contact activity does. None: every attempt is allowed."""
    outcome_of: Callable[[do.Contact], ContactOutcome] | None = None
    """The outcome of each granted attempt (default: ``contact_outcome``)."""
    staff_role: StaffRole = StaffRole.CREDIT_COMMITTEE
    """The role staff actions are authenticated with (as the workflow's credential check
    would give), unless an actor is passed."""
    issued: list[do.Command] = field(default_factory=list)
    published: list[Any] = field(default_factory=list)
    state: CaseState = field(init=False)

    def __post_init__(self) -> None:
        self.state = CaseState(
            case_id=self.loan.case_id,
            loan_id=self.loan.loan_id,
            delinquent_since=self.loan.delinquent_since,
            opened_at=self.now,
        )
        self.send(self.loan)

    # --- what happens to the case ---------------------------------------------------------

    def context(self) -> Context:
        return Context(policy=self.policy if self.policy_in_memory else None, now=self.now)

    def send(self, event: Event) -> str:
        return receive(self.state, event, self.context())

    def act(self, action: CaseAction, actor: Actor | None = None) -> str:
        actor = actor or self.actor_for(action)
        reason = refusal(self.state, action, self.policy, self.now, actor)
        if reason is not None:
            raise Refused(reason)
        staff_id = actor.staff_id if actor is not None else None
        return receive(
            self.state, action, Context(policy=self.policy, now=self.now, actor=staff_id)
        )

    def refusal(self, action: CaseAction, actor: Actor | None = None) -> str | None:
        return refusal(self.state, action, self.policy, self.now, actor or self.actor_for(action))

    def actor_for(self, action: CaseAction) -> Actor | None:
        """The signed-in staff member a staff action names, in ``staff_role``."""
        staff_id = named_staff(action)
        if action.action not in STAFF_ACTIONS or staff_id is None:
            return None
        return Actor(staff_id=staff_id, role=self.staff_role)

    def run(self) -> do.Command:
        """Carry out commands until the case waits or finishes; returns that command."""
        for _ in range(500):
            command = next_command(self.state, self.context())
            if isinstance(command, do.Wait | do.Finish):
                return command
            self.issued.append(command)
            receive(self.state, self.answer(command), self.context())
        raise AssertionError("the machine never settled: a command loop")

    def advance(self, delta: timedelta) -> do.Command:
        """Let time pass, firing every checkpoint on the way, as the workflow's timers do."""
        end = self.now + delta
        command = self.run()
        while isinstance(command, do.Wait) and command.until is not None and command.until <= end:
            self.now = max(self.now, command.until)
            receive(self.state, msg.Tick(), self.context())
            command = self.run()
        self.now = end
        return command

    def until(self, predicate: Callable[[CaseState], bool], within: timedelta) -> None:
        step = timedelta(hours=6)
        waited = timedelta(0)
        self.run()
        while not predicate(self.state):
            if waited >= within:
                raise AssertionError(f"not reached within {within}; stage {self.state.stage}")
            self.advance(step)
            waited += step

    # --- the scripted outside world -------------------------------------------------------

    def answer(self, command: do.Command) -> object:
        round_ = command.round
        if type(command) in self.fail:
            if isinstance(command, do.Contact):
                return msg.ContactFailed(round=round_, channel=command.channel.value, detail="down")
            return msg.CallFailed(
                round=round_,
                call=type(command).__name__,
                reason="SYSTEM_REJECTED",
                detail="refused by the test",
            )
        match command:
            case do.Publish(events=events):
                self.published.extend(events)
                return msg.Published(round=round_, count=len(events))
            case do.LoadPolicy():
                self.policy_in_memory = True
                return msg.PolicyLoaded(
                    round=round_,
                    policy=self.policy,
                    version=self.policy.version,
                    contact_rules_version=self.policy.contact.version,
                    time_scale=self.policy.durations.time_scale,
                )
            case do.ReadLoan():
                return msg.LoanRead(round=round_, loan=self.loan)
            case do.ReadCredit():
                return msg.CreditRead(round=round_, credit=self.credit)
            case do.ReadTimeZone():
                return msg.TimeZoneRead(round=round_, time_zone=self.time_zone)
            case do.RecordInteraction(interaction=interaction):
                if self.ledger is not None:
                    record_interaction(self.ledger, interaction)
                return msg.InteractionRecorded(
                    round=round_, interaction_id=interaction.interaction_id
                )
            case do.Assess(loan=the_loan, profile=profile, credit=credit, engagement=engagement):
                assessment = assess(the_loan, profile, credit, engagement, self.policy)
                return msg.Assessed(round=round_, assessment=assessment)
            case do.Propose(loan=the_loan, assessment=assessment, first_due=first_due):
                proposal = propose(the_loan, assessment, self.policy, first_due)
                return msg.Proposed(round=round_, proposal=proposal)
            case do.IssueAgreement():
                agreement = issue_agreement(
                    agreement_id=command.agreement_id,
                    case_id=self.state.case_id,
                    option=command.option,
                    loan=command.loan,
                    policy=self.policy,
                    issued_at=command.issued_at,
                    time_zone=command.time_zone,
                )
                return msg.AgreementIssued(round=round_, agreement=agreement)
            case do.SendForSignature(agreement=agreement):
                return msg.EnvelopeSent(round=round_, envelope_id=f"env-{agreement.agreement_id}")
            case do.CheckSignature():
                return msg.SignatureChecked(
                    round=round_, state=self.signature_state, signed_at=self.now
                )
            case do.VoidEnvelope(envelope_id=envelope_id):
                return msg.EnvelopeVoided(round=round_, envelope_id=envelope_id)
            case do.ApplyRestructure(agreement=agreement):
                return msg.RestructureApplied(
                    round=round_, restructure_ref=f"rs-{agreement.agreement_id}"
                )
            case do.ReadLedger():
                return msg.LedgerRead(round=round_, paid_total=self.paid_total, last_paid_at=None)
            case do.Contact(channel=channel):
                if self.contact_blocked_until is not None and self.now < self.contact_blocked_until:
                    decision = ContactDecision(
                        allowed=False,
                        reason="QUIET_HOURS",
                        next_allowed_at=self.contact_blocked_until,
                    )
                    return msg.ContactTried(
                        round=round_, channel=channel.value, decision=decision, attempt=None
                    )
                return self._contact(command)
        raise AssertionError(f"unscripted command {command}")

    def _contact(self, command: do.Contact) -> msg.Result:
        """As the contact activity does: the ledger grants and records, then the outcome."""
        outcome = self.outcome_of(command) if self.outcome_of else self.contact_outcome
        channel = command.channel.value
        if self.ledger is not None:
            decision = request_attempt(
                self.ledger,
                AttemptRequest(
                    attempt_id=command.attempt_id,
                    case_id=self.state.case_id,
                    debt=command.loan_id,
                    channel=command.channel,
                    at=self.now,
                    time_zone=self.time_zone,
                    holds=command.holds,
                    rules=self.policy.contact,
                ),
            )
            if not decision.allowed:
                return msg.ContactTried(
                    round=command.round, channel=channel, decision=decision, attempt=None
                )
            if outcome is ContactOutcome.UNKNOWN:  # the gateway timed out: the call failed
                return msg.ContactFailed(round=command.round, channel=channel, detail="timeout")
            record_outcome(
                self.ledger, OutcomeReport(attempt_id=command.attempt_id, outcome=outcome)
            )
        attempt = ContactAttempt(
            channel=command.channel,
            at=self.now,
            outcome=outcome,
            debt=command.loan_id,
            attempt_id=command.attempt_id,
        )
        return msg.ContactTried(
            round=command.round,
            channel=channel,
            decision=ContactDecision(allowed=True),
            attempt=attempt,
        )

    # --- shortcuts to a stage --------------------------------------------------------------

    def opened(self) -> Driver:
        self.run()
        assert self.state.stage is CaseStage.COLLECT_INFO and self.state.stages
        return self

    def offered(self, profile: FinancialProfile | None = None) -> Driver:
        self.opened()
        self.act(SubmitFinancials(profile=profile or borrower()))
        self.run()
        assert self.state.offer is not None, self.state.stage
        return self

    def signing(self) -> Driver:
        self.offered()
        assert self.state.proposal is not None
        self.act(ChooseOption(option_id=self.state.proposal.offered[0].option_id))
        self.run()
        assert self.state.signature is not None and self.state.signature.envelope_id
        return self

    def tracking(self) -> Driver:
        self.signing()
        assert self.state.signature is not None and self.state.signature.envelope_id
        self.act(Sign(envelope_id=self.state.signature.envelope_id))
        self.run()
        assert self.state.stage is CaseStage.TRACK
        return self

    def kinds(self) -> list[str]:
        return [event.kind for event in self.published]

    def decisions(self) -> list[str]:
        return [record.kind for record in self.state.decisions]
