"""The case search attributes: what the desk's lists, `accord case list` and the Temporal UI
filter on. Their values come from ``engine.view.projection``.

No personal data and no exact amount here — the visibility store is not encrypted: stages,
tiers, days past due, amounts as the lower bound of a 1-2-5 band in whole currency units, dates,
opaque staff ids, reason codes. The README lists what stays in clear.
"""

from typing import Any

from temporalio.common import SearchAttributeKey

CASE_STAGE = SearchAttributeKey.for_keyword("CaseStage")
RISK_TIER = SearchAttributeKey.for_keyword("RiskTier")
DAYS_PAST_DUE = SearchAttributeKey.for_int("DaysPastDue")
"""As of the case's last change (an event, an action, a checkpoint); ``OverdueSince`` is exact."""
OUTSTANDING_AMOUNT = SearchAttributeKey.for_int("OutstandingAmount")
"""Band lower bound (10,130.50 is 10000: 10,000 up to 20,000); cases from before the bands
held whole units until they continued as new."""
ARREARS_AMOUNT = SearchAttributeKey.for_int("ArrearsAmount")
"""Band lower bound, as ``OutstandingAmount``."""
OVERDUE_SINCE = SearchAttributeKey.for_datetime("OverdueSince")
"""The oldest unpaid due date (unset when nothing is overdue)."""
PRODUCT_TYPE = SearchAttributeKey.for_keyword("ProductType")
PORTFOLIO = SearchAttributeKey.for_keyword("Portfolio")
NEXT_CHECKPOINT_AT = SearchAttributeKey.for_datetime("NextCheckpointAt")
NEXT_CHECKPOINT_KIND = SearchAttributeKey.for_keyword("NextCheckpointKind")
POLICY_VERSION = SearchAttributeKey.for_keyword("PolicyVersion")
CASE_HOLDS = SearchAttributeKey.for_keyword_list("CaseHolds")
"""``dispute``, ``pause``, ``breathing_space``."""
BREATHING_SPACE_ENDS_AT = SearchAttributeKey.for_datetime("BreathingSpaceEndsAt")
AWAITING_APPROVAL = SearchAttributeKey.for_keyword_list("AwaitingApproval")
"""The authorities options wait for (``team_lead``, ``credit_committee``)."""
ASSIGNED_TO = SearchAttributeKey.for_keyword("AssignedTo")
CASE_ATTENTION = SearchAttributeKey.for_keyword("CaseAttention")
"""Why the case waits for a human (``SYSTEM_REJECTED``, ``DECISION_FAILED``, …)."""
PLAN_BROKEN = SearchAttributeKey.for_bool("PlanBroken")
CASE_OUTCOME = SearchAttributeKey.for_keyword("CaseOutcome")

ALL = (
    CASE_STAGE,
    RISK_TIER,
    DAYS_PAST_DUE,
    OUTSTANDING_AMOUNT,
    ARREARS_AMOUNT,
    OVERDUE_SINCE,
    PRODUCT_TYPE,
    PORTFOLIO,
    NEXT_CHECKPOINT_AT,
    NEXT_CHECKPOINT_KIND,
    POLICY_VERSION,
    CASE_HOLDS,
    BREATHING_SPACE_ENDS_AT,
    AWAITING_APPROVAL,
    ASSIGNED_TO,
    CASE_ATTENTION,
    PLAN_BROKEN,
    CASE_OUTCOME,
)

# Projection field (``engine.view.Projection``) -> attribute.
BY_PROJECTION: dict[str, SearchAttributeKey[Any]] = {
    "stage": CASE_STAGE,
    "risk_tier": RISK_TIER,
    "days_past_due": DAYS_PAST_DUE,
    "overdue_since": OVERDUE_SINCE,
    "outstanding_band": OUTSTANDING_AMOUNT,
    "arrears_band": ARREARS_AMOUNT,
    "product": PRODUCT_TYPE,
    "portfolio": PORTFOLIO,
    "next_checkpoint_at": NEXT_CHECKPOINT_AT,
    "next_checkpoint_kind": NEXT_CHECKPOINT_KIND,
    "policy_version": POLICY_VERSION,
    "holds": CASE_HOLDS,
    "breathing_space_ends_at": BREATHING_SPACE_ENDS_AT,
    "awaiting_approval": AWAITING_APPROVAL,
    "assigned_to": ASSIGNED_TO,
    "attention": CASE_ATTENTION,
    "plan_broken": PLAN_BROKEN,
    "outcome": CASE_OUTCOME,
}
# Cases started before the desk's attributes (``engine.view.ProjectionV1``).
BY_PROJECTION_V1: dict[str, SearchAttributeKey[Any]] = {
    "stage": CASE_STAGE,
    "risk_tier": RISK_TIER,
    "days_past_due": DAYS_PAST_DUE,
    "outstanding_amount": OUTSTANDING_AMOUNT,
    "product": PRODUCT_TYPE,
    "next_checkpoint_at": NEXT_CHECKPOINT_AT,
    "next_checkpoint_kind": NEXT_CHECKPOINT_KIND,
    "policy_version": POLICY_VERSION,
}
