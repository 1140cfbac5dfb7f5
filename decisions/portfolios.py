"""Which policy a case runs under: its loan's portfolio picks it (cards and mortgages are worked
differently; a simulation registers its compressed-time policy as a portfolio of its own).

Lookup for a portfolio name: the explicit map (``settings.portfolios``), else
``<directory>/<name>.toml`` if that file exists, else the default policy. No portfolio: the
default policy. The policy is read when a case opens; the case keeps it (and its version).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from decisions.policy import Policy, load_policy

log = logging.getLogger("accord.decisions.portfolios")
PORTFOLIO_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


@dataclass(frozen=True)
class PolicyRegistry:
    default: Path | None = None
    """None: the bundled default policy."""
    portfolios: Mapping[str, Path] = field(default_factory=dict)
    directory: Path | None = None

    def file_for(self, portfolio: str | None) -> Path | None:
        if portfolio is None:
            return self.default
        if portfolio in self.portfolios:
            return self.portfolios[portfolio]
        if self.directory is not None and PORTFOLIO_NAME.match(portfolio):
            candidate = self.directory / f"{portfolio}.toml"
            if candidate.is_file():
                return candidate
        log.info("portfolio %s has no policy of its own: the default applies", portfolio)
        return self.default

    def load(self, portfolio: str | None) -> Policy:
        """Raises ``PolicyError`` for a policy file that cannot be used."""
        return load_policy(self.file_for(portfolio))


def register_policy(directory: Path, portfolio: str, policy_text: str) -> Path:
    """Write a portfolio's policy where ``PolicyRegistry.directory`` finds it (atomically: a case
    opening meanwhile reads the old file or the new one, never half of one)."""
    if not PORTFOLIO_NAME.match(portfolio):
        raise ValueError(f"portfolio: {portfolio!r} is not a valid name")
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{portfolio}.toml"
    scratch = target.with_suffix(".toml.tmp")
    scratch.write_text(policy_text)
    scratch.replace(target)
    return target
