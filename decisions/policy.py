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
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, Field, ValidationError, model_validator

from schemas.assessment import Contract, Tier
from schemas.contact import ContactChannel
from schemas.plan import ApprovalAuthority, PlanType

PACKS_DIR = Path(__file__).parent / "packs"
DEFAULT_POLICY_FILE = PACKS_DIR / "default.toml"
ModelT = TypeVar("ModelT", bound=BaseModel)

Share = Annotated[Decimal, Field(ge=0, le=1, allow_inf_nan=False)]
Days = Annotated[int, Field(ge=0, le=3650, strict=True)]
PositiveDays = Annotated[int, Field(ge=1, le=3650, strict=True)]
MonthsChoice = Annotated[int, Field(ge=1, le=120, strict=True)]
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
    wilful_capacity_ratio: Annotated[Decimal, Field(gt=0, le=10)] = Decimal(1)
    """Capacity: affordable instalment ≥ this x the contractual instalment."""
    wilful_min_dpd: PositiveDays = 60
    """Capacity and this late (or with a broken agreement): capacity without willingness."""

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


class PlanCatalogue(Contract):
    """The candidate options; each tier then allows a subset within its limits."""

    extension_months: Annotated[tuple[MonthsChoice, ...], Field(min_length=1)] = (6, 12, 24)
    arrears_spread_months: Annotated[tuple[MonthsChoice, ...], Field(min_length=1)] = (3, 6, 12)
    reduced_payment_share: Annotated[Decimal, Field(gt=0, lt=1)] = Decimal("0.30")
    reduced_payment_months: MonthsChoice = 6
    reduced_payment_extension_months: Annotated[int, Field(ge=0, le=120, strict=True)] = 6
    max_term_months: Annotated[int, Field(ge=1, le=600, strict=True)] = 360

    @model_validator(mode="after")
    def _sorted_unique(self) -> PlanCatalogue:
        for name in ("extension_months", "arrears_spread_months"):
            values = getattr(self, name)
            if list(values) != sorted(set(values)):
                raise ValueError(f"{name}: must be increasing without repeats")
        return self


class TierPlans(Contract):
    allowed: tuple[PlanType, ...] = ()
    max_extension_months: Annotated[int, Field(ge=0, le=120, strict=True)] = 0
    max_arrears_spread_months: Annotated[int, Field(ge=0, le=120, strict=True)] = 0
    max_waiver_share: Share = Decimal(0)
    """Share of penalty interest and fees that may be waived."""
    max_rate_reduction_share: Share = Decimal(0)
    """Share by which the annual rate may be cut (0.5: half the rate)."""
    min_settlement_share: Share = Decimal(1)
    """Lowest lump sum accepted, as a share of the total outstanding."""

    @model_validator(mode="after")
    def _limits_match_allowed(self) -> TierPlans:
        if len(set(self.allowed)) != len(self.allowed):
            raise ValueError("allowed: lists a plan type twice")
        needs = {
            PlanType.TERM_EXTENSION: ("max_extension_months", self.max_extension_months > 0),
            PlanType.ARREARS_SPREAD: (
                "max_arrears_spread_months",
                self.max_arrears_spread_months > 0,
            ),
            PlanType.PENALTY_WAIVER: ("max_waiver_share", self.max_waiver_share > 0),
            PlanType.RATE_REDUCTION: (
                "max_rate_reduction_share",
                self.max_rate_reduction_share > 0,
            ),
            PlanType.LUMP_SUM_SETTLEMENT: ("min_settlement_share", self.min_settlement_share > 0),
        }
        for plan_type in self.allowed:
            if plan_type in needs and not needs[plan_type][1]:
                raise ValueError(
                    f"{needs[plan_type][0]}: must be above 0 when {plan_type} is allowed"
                )
        return self


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
    """Waiver share = amount waived / total outstanding."""

    automatic_max_waiver_share: Share = Decimal("0.02")
    team_lead_max_waiver_share: Share = Decimal("0.15")
    """Above this: credit committee."""
    rate_reduction_authority: ApprovalAuthority = ApprovalAuthority.TEAM_LEAD

    @model_validator(mode="after")
    def _ordered(self) -> ApprovalPolicy:
        if self.team_lead_max_waiver_share < self.automatic_max_waiver_share:
            raise ValueError("team_lead_max_waiver_share: below automatic_max_waiver_share")
        return self

    def authority_for(self, waiver_share: Decimal, rate_reduced: bool) -> ApprovalAuthority:
        if waiver_share > self.team_lead_max_waiver_share:
            by_waiver = ApprovalAuthority.CREDIT_COMMITTEE
        elif waiver_share > self.automatic_max_waiver_share:
            by_waiver = ApprovalAuthority.TEAM_LEAD
        else:
            by_waiver = ApprovalAuthority.AUTOMATIC
        if rate_reduced and self.rate_reduction_authority.level > by_waiver.level:
            return self.rate_reduction_authority
        return by_waiver


class RankingPolicy(Contract):
    discount_rate: Share = Decimal("0.12")
    """Annual rate for the present value of scheduled payments."""
    completion_light: Share = Decimal("0.90")
    completion_moderate: Share = Decimal("0.75")
    completion_severe: Share = Decimal("0.50")
    completion_wilful: Share = Decimal("0.35")
    completion_non_responsive: Share = Decimal("0.20")
    utilisation_penalty: Share = Decimal("0.5")
    """Completion probability lost when the plan uses all of the borrower's headroom."""

    def base_completion(self, tier: Tier) -> Decimal:
        value: Decimal = getattr(self, f"completion_{tier.value}")
        return value


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
    ALL = "all"
    UNANSWERED = "unanswered"
    """Every attempt that did not reach a conversation (unanswered, delivered, failed)."""


class ChannelCap(Contract):
    channel: ContactChannel
    counts: CapCounts = CapCounts.ALL
    per_day: Annotated[int, Field(ge=0, le=100, strict=True)] | None = None
    """Per borrower-local calendar day."""
    per_7_days: Annotated[int, Field(ge=0, le=700, strict=True)] | None = None
    """Per rolling 7 x 24 hours."""
    cooldown_after_conversation_days: Annotated[int, Field(ge=1, le=30, strict=True)] | None = None
    """No contact on this channel for this many days after a conversation on it (Reg F)."""

    @model_validator(mode="after")
    def _limits_something(self) -> ChannelCap:
        if (
            self.per_day is None
            and self.per_7_days is None
            and self.cooldown_after_conversation_days is None
        ):
            raise ValueError("per_day: set per_day, per_7_days or cooldown_after_conversation_days")
        return self


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
    """Length of a breathing space (moratorium) granted under this pack."""

    @model_validator(mode="after")
    def _valid_quiet_hours(self) -> ContactRules:
        for name in ("quiet_hours_start", "quiet_hours_end"):
            value: time = getattr(self, name)
            if value.tzinfo is not None or value.second or value.microsecond:
                raise ValueError(f"{name}: must be a local hh:mm time without zone")
        if self.quiet_hours_start == self.quiet_hours_end:
            raise ValueError("quiet_hours_end: equals quiet_hours_start")
        return self

    def caps_for(self, channel: ContactChannel) -> tuple[ChannelCap, ...]:
        return tuple(cap for cap in self.caps if cap.channel == channel)

    @property
    def breathing_space(self) -> timedelta:
        return timedelta(days=self.breathing_space_days)


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
    catalogue: PlanCatalogue = Field(default_factory=PlanCatalogue)
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
    pack_path = resolve_contact_pack(reference, policy_path)
    rules = _validated(ContactRules, _read_toml(pack_path), pack_path)
    return _validated(Policy, {**data, "contact": rules}, policy_path)


def load_contact_rules(reference: str) -> ContactRules:
    """A bundled pack by name (``"us-reg-f"``) or a pack file by path."""
    pack_path = resolve_contact_pack(reference, DEFAULT_POLICY_FILE)
    return _validated(ContactRules, _read_toml(pack_path), pack_path)


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
