"""A cooperative borrower: information, assessment, a 12-month plan, signature, every
instalment paid, cured."""

from __future__ import annotations

from decimal import Decimal

import pytest

from engine.actions import ChooseOption, SubmitFinancials
from engine.balance import amount_band
from schemas.case import CaseOutcome, CaseStage, InstalmentStatus
from tests.workflow.conftest import overdue_event, profile
from workflows import search_attributes as sa

pytestmark = pytest.mark.workflow


async def test_cooperative_borrower_completes_a_12_month_plan(new_case) -> None:
    case = await new_case(overdue_event(remaining_term_months=12))
    await case.start()
    await case.until(lambda v: v.contact_log, "first contact")

    await case.act(SubmitFinancials(profile=profile(monthly_income=Decimal("14000.00"))))
    await case.until_offer()
    view = await case.view()
    assert view.proposal is not None
    twelve = view.proposal.option("restructure_12m")  # the arrears folded in, 12 instalments
    await case.act(ChooseOption(option_id=twelve.option_id))
    await case.sign_when_asked()

    # Operations filter on these in the Temporal UI.
    view = await case.until(lambda v: v.next_checkpoint is not None, "a checkpoint")
    attributes = await case.attributes()
    assert attributes.get(sa.CASE_STAGE) == "track"
    assert attributes.get(sa.RISK_TIER) == "moderate"
    assert attributes.get(sa.POLICY_VERSION) == "accord-default-2026.2"
    # Signed and applied: the plan is current, and what it asks is banded (no exact amount).
    assert view.balance is not None and view.balance.basis == "plan"
    assert attributes.get(sa.DAYS_PAST_DUE) == 0
    assert attributes.get(sa.OVERDUE_SINCE) is None
    assert attributes.get(sa.ARREARS_AMOUNT) == 0
    assert attributes.get(sa.OUTSTANDING_AMOUNT) == amount_band(view.balance.outstanding) == 20000
    assert attributes.get(sa.PRODUCT_TYPE) == "personal_loan"
    assert attributes.get(sa.NEXT_CHECKPOINT_AT) == view.next_checkpoint.at

    await case.pay_every_instalment()
    # Recorded with one patch marker (``workflows.case.ONE_MARKER_PATCH``); the four-marker run
    # it replaced is kept as cooperative_12_month_plan.json and still replays.
    view = await case.finish("cooperative_12_month_plan_one_marker")

    assert view.outcome is CaseOutcome.CURED
    assert view.outcome_reasons == ("PLAN_COMPLETED",)
    assert len(view.schedule) == 12
    assert all(t.status is InstalmentStatus.PAID for t in view.schedule)
    audit = await case.audit()
    stages = [s.stage for s in audit.stages]
    assert stages[:5] == [
        CaseStage.COLLECT_INFO,
        CaseStage.ASSESS,
        CaseStage.PROPOSE,
        CaseStage.SIGN,
        CaseStage.TRACK,
    ]
    # Every 90 days a periodic re-assessment, then back to tracking the same plan.
    assert stages[5:-1] == [CaseStage.ASSESS, CaseStage.TRACK] * 4
    assert stages[-1] is CaseStage.CLOSED
    assert [e.trigger for e in case.events() if e.kind == "reassessed"] == ["periodic"] * 4
    kinds = case.kinds()
    assert kinds[:5] == ["opened", "contacted", "info_received", "assessed", "proposed"]
    assert "signed" in kinds
    assert kinds.count("instalment_paid") == 12
    assert kinds[-1] == "closed"
    assert "instalment_missed" not in kinds
    assert all(d.policy_version == "accord-default-2026.2" for d in audit.decisions)
