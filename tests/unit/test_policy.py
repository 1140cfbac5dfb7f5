"""Policy files and contact packs: the bundled ones load; broken ones fail with one message."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from decisions.policy import (
    CAPPED_CHANNELS,
    DEFAULT_POLICY_FILE,
    CapCounts,
    CapScope,
    Policy,
    PolicyError,
    bundled_contact_packs,
    load_contact_rules,
    load_policy,
)
from schemas.contact import ContactChannel
from schemas.plan import ApprovalAuthority, Lever

pytestmark = pytest.mark.unit

DEFAULT_TEXT = DEFAULT_POLICY_FILE.read_text(encoding="utf-8")


def test_default_policy_loads_with_its_contact_pack():
    policy = load_policy()
    assert policy.version == "accord-default-2026.2"
    assert policy.contact.name == "cn-2026"
    assert policy.affordability.max_share_of_disposable == Decimal("0.5")
    assert isinstance(policy.tiers.severe_min_overdue_share, Decimal)  # TOML decimals, no floats


def test_policy_round_trips_through_json():
    policy = load_policy()
    assert Policy.model_validate_json(policy.model_dump_json()) == policy


def test_bundled_packs_encode_the_regulations():
    assert bundled_contact_packs() == ["cn-2026", "uk-breathing-space", "us-reg-f"]
    china = load_contact_rules("cn-2026")
    assert (china.quiet_hours_start.hour, china.quiet_hours_end.hour) == (22, 8)
    assert [(c.per_day, c.counts, c.per) for c in china.caps_for(ContactChannel.PHONE)] == [
        (6, CapCounts.UNANSWERED, CapScope.CONTACT_DETAIL)
    ]
    reg_f = load_contact_rules("us-reg-f")
    assert (reg_f.quiet_hours_start.hour, reg_f.quiet_hours_end.hour) == (21, 8)
    per_debt = [c for c in reg_f.caps_for(ContactChannel.PHONE) if c.per is CapScope.DEBT]
    assert [(c.per_7_days, c.cooldown_after_conversation_days, c.counts) for c in per_debt] == [
        (7, 7, CapCounts.CONNECTED)
    ]
    uk = load_contact_rules("uk-breathing-space")
    assert (uk.breathing_space_days, uk.mental_health_crisis_extra_days) == (60, 30)


@pytest.mark.parametrize("name", bundled_contact_packs())
def test_every_pack_caps_every_channel_and_cites_a_source(name: str):
    rules = load_contact_rules(name)
    for channel in CAPPED_CHANNELS:
        caps = rules.caps_for(channel)
        assert caps, f"{name}: nothing limits {channel}"
        assert all(cap.source.strip() for cap in caps)


def test_a_pack_without_a_cap_on_a_channel_is_refused(tmp_path: Path):
    pack = (DEFAULT_POLICY_FILE.parent / "contact-us-reg-f.toml").read_text(encoding="utf-8")
    without_email = pack[: pack.index('[[caps]]\nchannel = "email"')]
    (tmp_path / "pack.toml").write_text(without_email)
    with pytest.raises(PolicyError, match="caps: no cap on email"):
        load_contact_rules(str(tmp_path / "pack.toml"))


def test_policy_may_use_a_pack_file_next_to_it(tmp_path: Path):
    pack = (DEFAULT_POLICY_FILE.parent / "contact-us-reg-f.toml").read_text(encoding="utf-8")
    (tmp_path / "bank-pack.toml").write_text(pack.replace('"us-reg-f"', '"bank-x"'))
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(DEFAULT_TEXT.replace('"cn-2026"', '"bank-pack.toml"'))
    assert load_policy(policy_file).contact.name == "bank-x"


def test_approval_authority_by_the_whole_concession_and_by_lever():
    approval = load_policy().approval
    extension = (Lever.TERM_EXTENSION,)
    assert approval.authority_for(Decimal("0.02"), extension) is ApprovalAuthority.AUTOMATIC
    assert approval.authority_for(Decimal("0.0201"), extension) is ApprovalAuthority.TEAM_LEAD
    assert approval.authority_for(Decimal("0.15"), extension) is ApprovalAuthority.TEAM_LEAD
    assert (
        approval.authority_for(Decimal("0.1501"), extension) is ApprovalAuthority.CREDIT_COMMITTEE
    )
    cut = (Lever.RATE_REDUCTION,)
    assert approval.authority_for(Decimal(0), cut) is ApprovalAuthority.TEAM_LEAD


BROKEN_POLICIES = [
    pytest.param(
        ("max_penalty_fee_waiver_share = 0.5", "max_penalty_fee_waiver_share = 1.5"),
        "plans.moderate.max_penalty_fee_waiver_share: fraction 1.5 is out of range",
        id="share-above-one",
    ),
    pytest.param(
        ("light_max_dpd = 30", "light_max_dpds = 30"),
        "tiers.light_max_dpds: Extra inputs are not permitted",
        id="typo-in-key",
    ),
    pytest.param(
        ("moderate_max_dpd = 90", "moderate_max_dpd = 20"),
        "tiers.moderate_max_dpd: must be above light_max_dpd",
        id="thresholds-out-of-order",
    ),
    pytest.param(
        ('levers = ["arrears_spread", ', 'levers = ["holiday", '),
        "plans.light.levers.0: Input should be 'arrears_capitalisation'",
        id="unknown-plan-type",
    ),
    pytest.param(
        ("[plans.non_responsive]\nlevers = []", ""),
        "plans.non_responsive: Field required",
        id="tier-missing",
    ),
    pytest.param(
        ("min_settlement_share = 0.6", "min_settlement_share = 0"),
        "plans.severe.min_settlement_share: must be above 0 when settlement is allowed",
        id="settlement-allowed-without-minimum",
    ),
    pytest.param(
        ("grace_days = 5", 'grace_days = "five"'),
        "durations.grace_days: Input should be a valid integer",
        id="wrong-type",
    ),
    pytest.param(
        ("info_reminder_days = [3, 7, 11]", "info_reminder_days = [3, 7, 14]"),
        "durations.info_reminder_days: each must be before info_deadline_days",
        id="reminder-after-deadline",
    ),
    pytest.param(
        ('contact_pack = "cn-2026"', 'contact_pack = "mars-2090"'),
        "contact_pack: no bundled pack 'mars-2090' "
        "(bundled: cn-2026, uk-breathing-space, us-reg-f)",
        id="unknown-pack",
    ),
    pytest.param(
        ("max_concession_share = 0.10", "max_concession_share = 0"),
        "plans.moderate.max_concession_share: must be above 0 when a concession is allowed",
        id="concession-allowed-without-limit",
    ),
    pytest.param(
        ('concession_order = ["penalty_fee_waiver", ', "concession_order = ["),
        "search.concession_order: must list penalty_fee_waiver, interest_waiver, rate_reduction",
        id="concession-order-incomplete",
    ),
    pytest.param(
        ('rate_reduction = "team_lead"', 'rate_reduction = "nobody"'),
        "approval.lever_authority.rate_reduction: Input should be",
        id="unknown-authority",
    ),
    pytest.param(
        ('version = "accord-default-2026.2"', 'version = ""'),
        "version: String should match pattern",
        id="empty-version",
    ),
    pytest.param(
        ("[tiers]", "[tiers"),
        "not valid TOML",
        id="toml-syntax",
    ),
]


@pytest.mark.parametrize(("edit", "expected"), BROKEN_POLICIES)
def test_broken_policy_fails_with_one_message_naming_file_and_field(
    tmp_path: Path, edit: tuple[str, str], expected: str
):
    old, new = edit
    assert old in DEFAULT_TEXT
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(DEFAULT_TEXT.replace(old, new, 1))
    with pytest.raises(PolicyError) as raised:
        load_policy(policy_file)
    message = str(raised.value)
    assert message.startswith(f"{policy_file}: ")
    assert expected in message
    assert "\n" not in message


def test_broken_pack_is_named_in_the_message(tmp_path: Path):
    (tmp_path / "pack.toml").write_text(
        'name = "bank-x"\nversion = "1"\nquiet_hours_start = "25:00"\nquiet_hours_end = "08:00"\n'
    )
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(DEFAULT_TEXT.replace('"cn-2026"', '"pack.toml"'))
    with pytest.raises(PolicyError) as raised:
        load_policy(policy_file)
    assert str(raised.value).startswith(f"{tmp_path / 'pack.toml'}: quiet_hours_start: ")


def test_several_problems_are_counted_in_the_one_message(tmp_path: Path):
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(DEFAULT_TEXT.replace("grace_days = 5", "grace_days = -1\nfoo = 1"))
    with pytest.raises(PolicyError, match=r"durations.grace_days: .* \(and 1 more problem\)$"):
        load_policy(policy_file)


def test_missing_policy_file(tmp_path: Path):
    with pytest.raises(PolicyError, match=r"missing\.toml: file not found"):
        load_policy(tmp_path / "missing.toml")


def test_a_pack_with_a_cap_without_its_source_is_refused(tmp_path: Path):
    pack = (DEFAULT_POLICY_FILE.parent / "contact-us-reg-f.toml").read_text(encoding="utf-8")
    lines = [line for line in pack.splitlines() if not line.startswith("source =")]
    (tmp_path / "pack.toml").write_text("\n".join(lines) + "\n")
    with pytest.raises(PolicyError, match=r"caps\.0\.source: required"):
        load_contact_rules(str(tmp_path / "pack.toml"))


def test_a_policy_recorded_before_caps_carried_sources_reads_back():
    """A case's history holds the policy it loaded: caps recorded without ``source`` (and a
    pack that left a channel uncapped) must still be read back, or the case cannot replay."""
    recorded = load_policy().model_dump(mode="json")
    recorded["contact"]["caps"] = [
        {k: v for k, v in cap.items() if k != "source"}
        for cap in recorded["contact"]["caps"]
        if cap["channel"] == "phone"
    ]
    policy = Policy.model_validate_json(json.dumps(recorded))
    assert policy.contact.incomplete() is not None
    assert all(cap.source is None for cap in policy.contact.caps)
