"""Policy: versioned configuration of every decision (DESIGN §5).

A policy is a TOML file. It names its contact-rule pack with ``contact_pack``: either a
bundled pack (``"cn-2026"`` → ``decisions/packs/contact-cn-2026.toml``) or a path to a
``.toml`` file relative to the policy file. Risk changes the policy, compliance the packs.
TOML floats are read as ``Decimal`` (never binary floats).
"""

from __future__ import annotations

import re
import tomllib
from datetime import time, timedelta
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, Field, ValidationError, model_validator

from schemas.assessment import Contract, Tier
from schemas.contact import ContactChannel
from schemas.money import RATE_PLACES, Share
from schemas.plan import ApprovalAuthority, Lever
from schemas.staff import StaffRole

PACKS_DIR = Path(__file__).parent / "packs"
DEFAULT_POLICY_FILE = PACKS_DIR / "default.toml"
ModelT = TypeVar("ModelT", bound=BaseModel)

Days = Annotated[int, Field(ge=0, le=3650, strict=True)]
PositiveDays = Annotated[int, Field(ge=1, le=3650, strict=True)]
PositiveCount = Annotated[int, Field(ge=1, le=1000, strict=True)]
Rounds = Annotated[int, Field(ge=0, le=20, strict=True)]


class PolicyError(ValueError):
    """A policy or contact pack that cannot be used; the message names the file and field."""


class TierThresholds(Contract):
    light_max_dpd: PositiveDays = 30
    moderate_max_dpd: PositiveDays = 90
    """Beyond this the case is severe."""
    light_max_prior_delinquencies: Days = 0
    severe_min_prior_delinquencies: PositiveDays = 3
    severe_min_broken_agreements: PositiveDays = 1
    severe_min_overdue_share: Share = Decimal("0.5")
    """Overdue amount / total outstanding at or above which the case is severe."""
    wilful_capacity_ratio: Annotated[Decimal, Field(gt=0, le=10, allow_inf_nan=False)] = Decimal(1)
    """Capacity: affordable instalment ≥ this x the contractual instalment."""
    # Wilful = capacity and at least one of these signs of unwillingness (never lateness):
    wilful_min_declined_offers: PositiveCount = 1
    """Offers declined in this case."""
    wilful_min_missed_instalments: PositiveCount = 2
    """Instalments promised in this case and not paid."""
    wilful_min_prior_delinquencies: PositiveCount = 3
    """Earlier episodes in 24 months: cured, then delinquent again, repeatedly."""
    wilful_min_unanswered_contacts: PositiveCount = 6
    """Contact attempts with no conversation at all, although capacity was declared."""

    @model_validator(mode="after")
    def _ordered(self) -> TierThresholds:
        if self.moderate_max_dpd <= self.light_max_dpd:
            raise ValueError("moderate_max_dpd: must be above light_max_dpd")
        if self.severe_min_prior_delinquencies <= self.light_max_prior_delinquencies:
            raise ValueError(
                "severe_min_prior_delinquencies: must be above light_max_prior_delinquencies"
            )
        return self


class AffordabilityPolicy(Contract):
    max_share_of_disposable: Share = Decimal("0.5")
    default_recovery_months: Annotated[int, Field(ge=1, le=60, strict=True)] = 6
    """Temporary hardship without a declared recovery horizon."""
    lasting_after_months: Annotated[int, Field(ge=1, le=60, strict=True)] = 12
    """A 'temporary' hardship expected to last longer than this is treated as lasting."""


CONCESSION_LEVERS = (Lever.PENALTY_FEE_WAIVER, Lever.INTEREST_WAIVER, Lever.RATE_REDUCTION)
RELIEF_LEVERS = (Lever.REDUCED_PAYMENT, Lever.INTEREST_ONLY, Lever.PAYMENT_HOLIDAY)


class PlanSearch(Contract):
    """How candidates are searched (``decisions.plans``)."""

    max_term_months: Annotated[int, Field(ge=1, le=600, strict=True)] = 480
    max_offered: Annotated[int, Field(ge=1, le=10, strict=True)] = 4
    """The best options by expected recovery: of each kind of plan at most one without and one
    with a concession."""
    concession_order: tuple[Lever, ...] = CONCESSION_LEVERS
    """Which concession is used up first when a plan needs one: cheapest first."""
    term_points: Annotated[int, Field(ge=2, le=60, strict=True)] = 12
    """Plan lengths compared for each kind of plan (the shortest that fits is always one)."""
    rate_step: Annotated[Decimal, Field(gt=0, le=Decimal("0.01"), allow_inf_nan=False)] = Decimal(
        "0.0001"
    )
    """A reduced rate is the contractual rate less a whole number of these steps."""

    @model_validator(mode="after")
    def _order_is_the_concessions(self) -> PlanSearch:
        exponent = self.rate_step.as_tuple().exponent
        if isinstance(exponent, int) and exponent < -RATE_PLACES:
            raise ValueError(f"rate_step: at most {RATE_PLACES} decimals")
        if sorted(self.concession_order) != sorted(CONCESSION_LEVERS):
            raise ValueError(
                "concession_order: must list "
                + ", ".join(lever.value for lever in CONCESSION_LEVERS)
                + " once each"
            )
        return self


class TierPlans(Contract):
    """The levers a tier may use, each within its limit, and a limit on their combination."""

    levers: tuple[Lever, ...] = ()
    max_extension_months: Annotated[int, Field(ge=0, le=480, strict=True)] = 0
    max_relief_months: Annotated[int, Field(ge=0, le=60, strict=True)] = 0
    """Longest reduced-payment, interest-only or holiday phase (its length is the borrower's
    recovery horizon, up to this)."""
    max_arrears_spread_months: Annotated[int, Field(ge=0, le=120, strict=True)] = 0
    max_penalty_fee_waiver_share: Share = Decimal(0)
    """Share of the penalty interest and fees owed that may be waived."""
    max_interest_waiver_share: Share = Decimal(0)
    """Share of the ordinary interest owed that may be waived."""
    max_rate_reduction_share: Share = Decimal(0)
    """Share by which the annual rate may be cut (0.5: half the rate)."""
    min_settlement_share: Share = Decimal(1)
    """Lowest lump sum accepted, as a share of the total outstanding."""
    max_concession_share: Share = Decimal(0)
    """All concessions of one plan together (waivers and the interest a lower rate forgoes),
    as a share of the total outstanding."""

    @model_validator(mode="after")
    def _limits_match_levers(self) -> TierPlans:
        if len(set(self.levers)) != len(self.levers):
            raise ValueError("levers: lists a lever twice")
        needs = {
            Lever.TERM_EXTENSION: ("max_extension_months", self.max_extension_months > 0),
            Lever.ARREARS_SPREAD: (
                "max_arrears_spread_months",
                self.max_arrears_spread_months > 0,
            ),
            Lever.REDUCED_PAYMENT: ("max_relief_months", self.max_relief_months > 0),
            Lever.INTEREST_ONLY: ("max_relief_months", self.max_relief_months > 0),
            Lever.PAYMENT_HOLIDAY: ("max_relief_months", self.max_relief_months > 0),
            Lever.PENALTY_FEE_WAIVER: (
                "max_penalty_fee_waiver_share",
                self.max_penalty_fee_waiver_share > 0,
            ),
            Lever.INTEREST_WAIVER: (
                "max_interest_waiver_share",
                self.max_interest_waiver_share > 0,
            ),
            Lever.RATE_REDUCTION: (
                "max_rate_reduction_share",
                self.max_rate_reduction_share > 0,
            ),
            Lever.SETTLEMENT: ("min_settlement_share", self.min_settlement_share > 0),
        }
        for lever in self.levers:
            if lever in needs and not needs[lever][1]:
                raise ValueError(f"{needs[lever][0]}: must be above 0 when {lever} is allowed")
        if any(lever in CONCESSION_LEVERS for lever in self.levers) and not (
            self.max_concession_share > 0
        ):
            raise ValueError("max_concession_share: must be above 0 when a concession is allowed")
        return self

    def allows(self, *levers: Lever) -> bool:
        return all(lever in self.levers for lever in levers)


class PlansByTier(Contract):
    light: TierPlans
    moderate: TierPlans
    severe: TierPlans
    wilful: TierPlans
    non_responsive: TierPlans

    def for_tier(self, tier: Tier) -> TierPlans:
        plans: TierPlans = getattr(self, tier.value)
        return plans


class ApprovalPolicy(Contract):
    """Concession share = what the lender gives up (waivers and the interest a lower rate
    forgoes) / total outstanding. Some levers need at least a given authority whatever their
    size."""

    automatic_max_concession_share: Share = Decimal("0.02")
    team_lead_max_concession_share: Share = Decimal("0.15")
    """Above this: credit committee."""
    lever_authority: dict[Lever, ApprovalAuthority] = Field(
        default_factory=lambda: {Lever.RATE_REDUCTION: ApprovalAuthority.TEAM_LEAD}
    )
    role_authority: dict[StaffRole, ApprovalAuthority] = Field(
        default_factory=lambda: {
            StaffRole.AGENT: ApprovalAuthority.AUTOMATIC,
            StaffRole.TEAM_LEAD: ApprovalAuthority.TEAM_LEAD,
            StaffRole.CREDIT_COMMITTEE: ApprovalAuthority.CREDIT_COMMITTEE,
            StaffRole.ADMINISTRATOR: ApprovalAuthority.CREDIT_COMMITTEE,
        }
    )
    """What each staff role may approve (the role comes from the authenticated identity);
    a role not listed approves nothing."""

    @model_validator(mode="after")
    def _ordered(self) -> ApprovalPolicy:
        if self.team_lead_max_concession_share < self.automatic_max_concession_share:
            raise ValueError("team_lead_max_concession_share: below automatic_max_concession_share")
        return self

    def authority_for(
        self, concession_share: Decimal, levers: tuple[Lever, ...]
    ) -> ApprovalAuthority:
        if concession_share > self.team_lead_max_concession_share:
            authority = ApprovalAuthority.CREDIT_COMMITTEE
        elif concession_share > self.automatic_max_concession_share:
            authority = ApprovalAuthority.TEAM_LEAD
        else:
            authority = ApprovalAuthority.AUTOMATIC
        for lever in levers:
            needed = self.lever_authority.get(lever, ApprovalAuthority.AUTOMATIC)
            if needed.level > authority.level:
                authority = needed
        return authority

    def granted_to(self, role: StaffRole) -> ApprovalAuthority:
        return self.role_authority.get(role, ApprovalAuthority.AUTOMATIC)


class TierShares(Contract):
    light: Share
    moderate: Share
    severe: Share
    wilful: Share
    non_responsive: Share

    def of(self, tier: Tier) -> Decimal:
        value: Decimal = getattr(self, tier.value)
        return value


class RankingPolicy(Contract):
    """The recovery model options are ranked by (``decisions.plans``; explained in the
    default policy file). ``model`` names the formula; change it with the formula."""

    model: Literal["survival-2026.1"] = "survival-2026.1"
    discount_rate: Share = Decimal("0.12")
    """Annual rate at which the lender discounts future cash (its cost of funds and risk)."""
    start: TierShares = Field(
        default_factory=lambda: TierShares(
            light=Decimal("0.95"),
            moderate=Decimal("0.90"),
            severe=Decimal("0.80"),
            wilful=Decimal("0.60"),
            non_responsive=Decimal("0.50"),
        )
    )
    """Probability that the borrower starts paying the plan at all."""
    monthly_hazard: TierShares = Field(
        default_factory=lambda: TierShares(
            light=Decimal("0.004"),
            moderate=Decimal("0.008"),
            severe=Decimal("0.015"),
            wilful=Decimal("0.03"),
            non_responsive=Decimal("0.03"),
        )
    )
    """Probability of breaking the plan in a month in which it asks nothing of the budget."""
    stretch: Annotated[Decimal, Field(ge=0, le=20, allow_inf_nan=False)] = Decimal("1.5")
    """How much faster plans break when they use the whole affordable instalment: the monthly
    hazard is ``hazard x (1 + stretch x instalment / affordable instalment)``."""


MAX_TIME_SCALE = 10 * 86_400
"""Ten policy days per server second: beyond that a timer's rounding to the server's
millisecond clock starts to move due dates."""


class Durations(Contract):
    info_deadline_days: PositiveDays = 14
    info_reminder_days: tuple[PositiveDays, ...] = (3, 7, 11)
    """Days after the first contact; each before the deadline."""
    approval_sla_hours: Annotated[int, Field(ge=1, le=24 * 90, strict=True)] = 48
    offer_response_days: PositiveDays = 14
    """From the offer to the borrower's answer; no answer by then escalates."""
    offer_reminder_days: tuple[PositiveDays, ...] = (3, 7, 11)
    """Days after the offer; each before offer_response_days."""
    signature_expiry_days: PositiveDays = 10
    signature_reminder_days: tuple[PositiveDays, ...] = (3, 7)
    first_instalment_days: PositiveDays = 30
    """From signature to the first due date."""
    grace_days: Days = 5
    reassessment_interval_days: PositiveDays = 90
    max_counter_proposals: Rounds = 2
    max_reproposal_rounds: Rounds = 2
    default_after_missed_instalments: Annotated[int, Field(ge=1, le=12, strict=True)] = 2
    hardship_hold_days: Annotated[int, Field(ge=1, le=365, strict=True)] = 30
    """How long a hardship declaration made before its loan has an open case is kept for the
    case (the stream processor applies it when the case opens); older ones are dropped."""
    time_scale: Annotated[int, Field(ge=1, le=MAX_TIME_SCALE, strict=True)] = 1
    """Policy seconds per server second. 1 in production; a simulation sets 86,400 so a policy
    day passes in a second. A case keeps the scale it opened with."""

    @model_validator(mode="after")
    def _reminders_before_deadlines(self) -> Durations:
        if any(day >= self.info_deadline_days for day in self.info_reminder_days):
            raise ValueError("info_reminder_days: each must be before info_deadline_days")
        if any(day >= self.offer_response_days for day in self.offer_reminder_days):
            raise ValueError("offer_reminder_days: each must be before offer_response_days")
        if any(day >= self.signature_expiry_days for day in self.signature_reminder_days):
            raise ValueError("signature_reminder_days: each must be before signature_expiry_days")
        return self

    @property
    def hardship_hold(self) -> timedelta:
        """In server time: a simulation's compressed policy days pass faster."""
        return timedelta(days=self.hardship_hold_days) / self.time_scale

    @property
    def info_deadline(self) -> timedelta:
        return timedelta(days=self.info_deadline_days)

    @property
    def approval_sla(self) -> timedelta:
        return timedelta(hours=self.approval_sla_hours)

    @property
    def signature_expiry(self) -> timedelta:
        return timedelta(days=self.signature_expiry_days)

    @property
    def grace(self) -> timedelta:
        return timedelta(days=self.grace_days)

    @property
    def reassessment_interval(self) -> timedelta:
        return timedelta(days=self.reassessment_interval_days)


class CapCounts(StrEnum):
    """Which outbound attempts a cap counts. An attempt whose outcome is unknown (placed, the
    gateway never said) counts under every rule: it was made."""

    ALL = "all"
    """Every attempt made, whatever became of it."""
    UNANSWERED = "unanswered"
    """Every attempt that reached no conversation (unanswered, failed, delivered, unknown)."""
    CONNECTED = "connected"
    """Every attempt except one that never connected to the number or address (failed):
    Reg F 12 CFR 1006.14(b)(3)(ii) leaves those out of its count."""


class CapScope(StrEnum):
    """Whose attempts a cap counts together."""

    CONTACT_DETAIL = "contact_detail"
    """The borrower's contact detail on this channel, across all of their debts and episodes
    (a guideline that counts per debtor and contact detail)."""
    DEBT = "debt"
    """One debt (loan) across all of its episodes (a regulation that counts per debt)."""


class ChannelCap(Contract):
    """A limit on one channel, in the borrower's calendar days (their time zone, DST included)."""

    channel: ContactChannel
    counts: CapCounts = CapCounts.ALL
    per: CapScope = CapScope.CONTACT_DETAIL
    per_day: Annotated[int, Field(ge=0, le=100, strict=True)] | None = None
    """Per borrower-local calendar day."""
    per_7_days: Annotated[int, Field(ge=0, le=700, strict=True)] | None = None
    """Per 7 consecutive borrower-local calendar days: the day of the attempt and the 6 before."""
    cooldown_after_conversation_days: Annotated[int, Field(ge=1, le=30, strict=True)] | None = None
    """No contact on this channel (in this scope) for this many calendar days after a
    conversation on it, either way: the day of the conversation is the first of them (Reg F)."""
    source: Annotated[str, Field(min_length=1, max_length=300)] | None = None
    """Where the limit comes from: the regulation's paragraph, or the bank's own rule. Every
    pack file names one (``load_contact_rules`` refuses a cap without); None only in a policy
    recorded in a case's history before caps carried their source."""

    @model_validator(mode="after")
    def _limits_something(self) -> ChannelCap:
        if (
            self.per_day is None
            and self.per_7_days is None
            and self.cooldown_after_conversation_days is None
        ):
            raise ValueError("per_day: set per_day, per_7_days or cooldown_after_conversation_days")
        return self


CAPPED_CHANNELS = (ContactChannel.PHONE, ContactChannel.SMS, ContactChannel.EMAIL)
"""Every channel the gateway sends on: a pack caps each of them (letters go by post, outside
the gateway)."""


class ContactRules(Contract):
    """A contact-rule pack: what a regulation allows, as hard blocks."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]
    version: Annotated[str, Field(min_length=1, max_length=64)]
    description: str = ""
    quiet_hours_start: time
    """Borrower-local time from which contact stops, e.g. 22:00."""
    quiet_hours_end: time
    """Borrower-local time from which contact may resume, e.g. 08:00."""
    caps: tuple[ChannelCap, ...] = ()
    breathing_space_days: Annotated[int, Field(ge=1, le=365, strict=True)] = 60
    """Calendar days of a breathing space (moratorium), counted from its first day."""
    mental_health_crisis_extra_days: Annotated[int, Field(ge=0, le=365, strict=True)] = 30
    """A mental-health crisis moratorium lasts while the treatment does, then this many
    calendar days from the day after the treatment ended."""

    @model_validator(mode="after")
    def _valid_quiet_hours(self) -> ContactRules:
        for name in ("quiet_hours_start", "quiet_hours_end"):
            value: time = getattr(self, name)
            if value.tzinfo is not None or value.second or value.microsecond:
                raise ValueError(f"{name}: must be a local hh:mm time without zone")
        if self.quiet_hours_start == self.quiet_hours_end:
            raise ValueError("quiet_hours_end: equals quiet_hours_start")
        return self

    def incomplete(self) -> str | None:
        """Why this pack may not be loaded from a file: a channel without a cap, a cap
        without its source. Checked where a pack is read, not by the model: a policy recorded
        in a case's history before these were required must still be read back."""
        uncapped = [c.value for c in CAPPED_CHANNELS if not self.caps_for(c)]
        if uncapped:
            return f"caps: no cap on {', '.join(uncapped)} (every channel needs one)"
        for index, cap in enumerate(self.caps):
            if cap.source is None:
                return f"caps.{index}.source: required (the regulation or the bank's rule)"
        return None

    def caps_for(self, channel: ContactChannel) -> tuple[ChannelCap, ...]:
        return tuple(cap for cap in self.caps if cap.channel == channel)


class Policy(Contract):
    version: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")]
    """Recorded by every case and decision made under this policy."""
    description: str = ""
    contact_pack: str
    contact: ContactRules
    """Loaded from ``contact_pack``."""
    contact_channels: Annotated[tuple[ContactChannel, ...], Field(min_length=1)] = (
        ContactChannel.SMS,
        ContactChannel.EMAIL,
        ContactChannel.PHONE,
    )
    """Order in which channels are tried when collecting information."""
    tiers: TierThresholds = Field(default_factory=TierThresholds)
    affordability: AffordabilityPolicy = Field(default_factory=AffordabilityPolicy)
    search: PlanSearch = Field(default_factory=PlanSearch)
    plans: PlansByTier
    approval: ApprovalPolicy = Field(default_factory=ApprovalPolicy)
    ranking: RankingPolicy = Field(default_factory=RankingPolicy)
    durations: Durations = Field(default_factory=Durations)


def load_policy(path: Path | None = None) -> Policy:
    """Load and validate a policy and its contact pack (``None``: the bundled default).

    Raises ``PolicyError`` with one message naming the file and the field.
    """
    policy_path = path if path is not None else DEFAULT_POLICY_FILE
    data = _read_toml(policy_path)
    if "contact" in data:
        raise PolicyError(f"{policy_path}: contact: name a pack with contact_pack instead")
    reference = data.get("contact_pack")
    if not isinstance(reference, str) or not reference:
        raise PolicyError(f"{policy_path}: contact_pack: required, the name or path of a pack")
    rules = _read_pack(resolve_contact_pack(reference, policy_path))
    return _validated(Policy, {**data, "contact": rules}, policy_path)


def load_contact_rules(reference: str) -> ContactRules:
    """A bundled pack by name (``"us-reg-f"``) or a pack file by path."""
    return _read_pack(resolve_contact_pack(reference, DEFAULT_POLICY_FILE))


def _read_pack(pack_path: Path) -> ContactRules:
    rules = _validated(ContactRules, _read_toml(pack_path), pack_path)
    problem = rules.incomplete()
    if problem is not None:
        raise PolicyError(f"{pack_path}: {problem}")
    return rules


def bundled_contact_packs() -> list[str]:
    return sorted(p.stem.removeprefix("contact-") for p in PACKS_DIR.glob("contact-*.toml"))


def is_pack_path(reference: str) -> bool:
    """A contact pack named by file path (relative to its policy file), not a bundled name."""
    return reference.endswith(".toml") or "/" in reference


def resolve_contact_pack(reference: str, policy_path: Path) -> Path:
    if is_pack_path(reference):
        return (policy_path.parent / reference).resolve()
    bundled = PACKS_DIR / f"contact-{reference}.toml"
    if not bundled.is_file():
        raise PolicyError(
            f"{policy_path}: contact_pack: no bundled pack {reference!r} "
            f"(bundled: {', '.join(bundled_contact_packs())})"
        )
    return bundled


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file, parse_float=Decimal)
    except FileNotFoundError:
        raise PolicyError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as error:
        raise PolicyError(f"{path}: not valid TOML: {error}") from None


def _validated(model: type[ModelT], data: dict[str, Any], path: Path) -> ModelT:
    try:
        return model.model_validate(data, extra="forbid")
    except ValidationError as error:
        raise PolicyError(f"{path}: {describe_first_error(error)}") from None


_NAMED_MESSAGE = re.compile(r"^(?P<field>[a-z_][a-z0-9_]*): (?P<message>.+)$", re.DOTALL)


def describe_first_error(error: ValidationError) -> str:
    """One line: ``field.path: message`` of the first problem (and how many more)."""
    problems = error.errors(include_url=False)
    first = problems[0]
    location = [str(part) for part in first["loc"]]
    message = first["msg"].removeprefix("Value error, ")
    # Model validators name their field at the start of the message: fold it into the path.
    named = _NAMED_MESSAGE.match(message)
    if first["type"] == "value_error" and named:
        location.append(named["field"])
        message = named["message"]
    field = ".".join(location)
    text = f"{field}: {message}" if field else message
    if len(problems) > 1:
        text += f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})"
    return text
