"""Borrower behaviour profiles and the mix in which a portfolio contains them."""

from __future__ import annotations

import random
from enum import StrEnum


class Profile(StrEnum):
    COOPERATIVE = "cooperative"
    """Answers, picks the best-ranked option, signs, pays on time."""
    TEMPORARY_HARDSHIP = "temporary_hardship"
    """Lost income for a few months; takes a reduced or extended plan and pays."""
    LASTING_HARDSHIP = "lasting_hardship"
    """Lasting loss of income; counter-proposes, may miss instalments."""
    WILFUL = "wilful"
    """Can pay but will not: declares ample income, then declines or stops paying."""
    UNRESPONSIVE = "unresponsive"
    """Never answers contact."""
    PAYS_LATE = "pays_late"
    """Agrees and pays, but late in the grace period; sometimes cures outside the plan."""
    DISPUTES = "disputes"
    """Disputes the debt once contacted; operations review it."""


DEFAULT_MIX: dict[Profile, int] = {
    Profile.COOPERATIVE: 35,
    Profile.TEMPORARY_HARDSHIP: 15,
    Profile.LASTING_HARDSHIP: 10,
    Profile.WILFUL: 10,
    Profile.UNRESPONSIVE: 15,
    Profile.PAYS_LATE: 10,
    Profile.DISPUTES: 5,
}


class MixError(ValueError):
    """A ``--mix`` that cannot be used; the message says why."""


def parse_mix(text: str | None) -> dict[Profile, int]:
    """``"cooperative=40,unresponsive=10"`` → weights; profiles not named get weight 0.

    ``None`` or an empty string: ``DEFAULT_MIX``.
    """
    if not text or not text.strip():
        return dict(DEFAULT_MIX)
    mix = dict.fromkeys(Profile, 0)
    for part in text.split(","):
        name, sep, weight = part.partition("=")
        name = name.strip().replace("-", "_")
        if not sep:
            raise MixError(f"mix: {part.strip()!r} is not name=weight")
        try:
            profile = Profile(name)
        except ValueError:
            known = ", ".join(p.value for p in Profile)
            raise MixError(f"mix: unknown profile {name!r} (known: {known})") from None
        if not weight.strip().isdigit():
            raise MixError(f"mix: weight of {name} must be a whole number >= 0, not {weight!r}")
        mix[profile] = int(weight)
    if sum(mix.values()) == 0:
        raise MixError("mix: every weight is 0")
    return mix


def assign_profiles(count: int, mix: dict[Profile, int], rng: random.Random) -> list[Profile]:
    """Exactly proportional (largest remainder), then shuffled: a mix of 40/60 over 10 loans
    is 4 and 6, not "about" 4 and 6."""
    total = sum(mix.values())
    if total <= 0:
        raise MixError("mix: every weight is 0")
    exact = {profile: count * weight / total for profile, weight in mix.items()}
    quotas = {profile: int(share) for profile, share in exact.items()}
    left = count - sum(quotas.values())
    # Ties broken by the enum's order so the result depends on the seed only.
    order = sorted(
        Profile, key=lambda p: (-(exact.get(p, 0) - quotas.get(p, 0)), list(Profile).index(p))
    )
    for profile in order[:left]:
        quotas[profile] = quotas.get(profile, 0) + 1
    profiles = [profile for profile in Profile for _ in range(quotas.get(profile, 0))]
    rng.shuffle(profiles)
    return profiles
