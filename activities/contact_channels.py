"""Customer contact channels (SMS, e-mail, phone) and the directory of contact details.

Contact details are personal data: they are looked up here, by ``borrower_id``, inside the
contact activity, and never travel through workflow history, search attributes or logs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from activities.faults import Faults, PermanentRejection
from schemas.contact import ContactChannel, ContactOutcome


@dataclass(frozen=True)
class ContactDetails:
    phone: str | None
    email: str | None
    time_zone: str
    """IANA name, e.g. ``Asia/Shanghai``: quiet hours are the borrower's local time."""


class ContactDirectory(Protocol):
    async def lookup(self, borrower_id: str) -> ContactDetails: ...


class ContactGateway(Protocol):
    async def send(
        self, channel: ContactChannel, address: str, template: str, idempotency_key: str
    ) -> ContactOutcome:
        """Deliver one message or place one call. A repeated key does not contact twice."""
        ...


@dataclass
class ContactDirectorySimulator:
    entries: dict[str, ContactDetails] = field(default_factory=dict)
    default_time_zone: str = "Asia/Shanghai"
    faults: Faults = field(default_factory=Faults)

    async def lookup(self, borrower_id: str) -> ContactDetails:
        self.faults.before("lookup")
        return self.entries.get(
            borrower_id,
            ContactDetails(
                phone=f"+86-sim-{borrower_id}",
                email=f"{borrower_id}@sim.invalid",
                time_zone=self.default_time_zone,
            ),
        )


@dataclass
class ContactGatewaySimulator:
    """Delivers SMS and e-mail; phone calls go unanswered unless ``answers_phone``."""

    answers_phone: bool = False
    sent: dict[str, tuple[ContactChannel, str, ContactOutcome]] = field(default_factory=dict)
    faults: Faults = field(default_factory=Faults)

    async def send(
        self, channel: ContactChannel, address: str, template: str, idempotency_key: str
    ) -> ContactOutcome:
        self.faults.before(f"send_{channel.value}")
        if channel is ContactChannel.LETTER:
            raise PermanentRejection("send: the simulator has no postal channel")
        if idempotency_key not in self.sent:
            if channel is ContactChannel.PHONE:
                outcome = (
                    ContactOutcome.ANSWERED if self.answers_phone else ContactOutcome.UNANSWERED
                )
            else:
                outcome = ContactOutcome.DELIVERED
            self.sent[idempotency_key] = (channel, template, outcome)
        self.faults.after(f"send_{channel.value}")  # placed, and the answer may be lost
        return self.sent[idempotency_key][2]
