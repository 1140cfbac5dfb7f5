"""The case search attributes operations filter on in the Temporal UI. No personal data here:
stages, tiers, whole-unit amounts and dates; their values come from ``engine.view.projection``."""

from temporalio.common import SearchAttributeKey

CASE_STAGE = SearchAttributeKey.for_keyword("CaseStage")
RISK_TIER = SearchAttributeKey.for_keyword("RiskTier")
DAYS_PAST_DUE = SearchAttributeKey.for_int("DaysPastDue")
# Whole currency units, rounded up: a filter projection only; the exact Decimal is in the case view.
OUTSTANDING_AMOUNT = SearchAttributeKey.for_int("OutstandingAmount")
PRODUCT_TYPE = SearchAttributeKey.for_keyword("ProductType")
NEXT_CHECKPOINT_AT = SearchAttributeKey.for_datetime("NextCheckpointAt")
NEXT_CHECKPOINT_KIND = SearchAttributeKey.for_keyword("NextCheckpointKind")
POLICY_VERSION = SearchAttributeKey.for_keyword("PolicyVersion")

ALL = (
    CASE_STAGE,
    RISK_TIER,
    DAYS_PAST_DUE,
    OUTSTANDING_AMOUNT,
    PRODUCT_TYPE,
    NEXT_CHECKPOINT_AT,
    NEXT_CHECKPOINT_KIND,
    POLICY_VERSION,
)
