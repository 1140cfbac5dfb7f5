"""The external systems a worker talks to, built from settings: HTTP adapters to the
configured URLs (the bank's own systems, or the embedded services of ``accord stack up``).
The in-process simulators in this package are for tests that construct them directly."""

from __future__ import annotations

from dataclasses import dataclass

from activities.contact_channels import ContactDirectory, ContactGateway
from activities.core_banking import CoreBanking
from activities.esign import ESignature
from activities.http_adapters import (
    ContactDirectoryHttp,
    ContactGatewayHttp,
    CoreBankingHttp,
    ESignatureHttp,
)
from decisions.portfolios import PolicyRegistry
from settings import Settings


@dataclass
class ExternalSystems:
    core_banking: CoreBanking
    directory: ContactDirectory
    gateway: ContactGateway
    esign: ESignature

    async def aclose(self) -> None:
        for system in (self.core_banking, self.directory, self.gateway, self.esign):
            close = getattr(system, "aclose", None)
            if close is not None:
                await close()


def http_systems(settings: Settings) -> ExternalSystems:
    return ExternalSystems(
        core_banking=CoreBankingHttp(settings.core_banking),
        directory=ContactDirectoryHttp(settings.core_banking),
        gateway=ContactGatewayHttp(settings.contact),
        esign=ESignatureHttp(settings.esign, settings.esign_callback_url),
    )


def policy_registry(settings: Settings) -> PolicyRegistry:
    return PolicyRegistry(
        default=settings.policy_file,
        portfolios=dict(settings.portfolios),
        directory=settings.portfolio_policy_dir.resolve(),
    )
