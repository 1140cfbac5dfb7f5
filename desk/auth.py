"""Who is signed in to the desk.

Pages: a session cookie (``accord_desk``: a signed session token; ``HttpOnly``, ``Secure``,
``SameSite=Strict``) and, on every form, the session's CSRF secret, which only a page the desk
rendered knows. The JSON API: ``Authorization: Bearer <token>`` (`accord login`), no cookie, so
no CSRF to guard. Either way the account behind the token must still exist with the same role.
Nothing personal is logged: staff ids are opaque, and passwords and tokens are never logged.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import Request

from decisions.policy import load_policy
from schemas.plan import ApprovalAuthority
from schemas.staff import Actor, StaffRole
from settings import Settings
from staff.accounts import Accounts
from staff.credentials import CredentialError, Session, sign_session, verify_session
from staff.keys import signing_key

log = logging.getLogger("accord.desk.auth")
SESSION_COOKIE = "accord_desk"
LOGIN_COOKIE = "accord_desk_login"
"""Double-submit secret of the sign-in form (against sign-in CSRF)."""


class NotSignedIn(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class DeskAuth:
    settings: Settings
    key: Ed25519PrivateKey
    accounts: Accounts
    role_authority: dict[StaffRole, ApprovalAuthority]

    @classmethod
    def from_settings(cls, settings: Settings) -> DeskAuth:
        policy = load_policy(settings.policy_file)
        return cls(
            settings,
            signing_key(settings),
            Accounts(settings.staff_accounts_file),
            dict(policy.approval.role_authority),
        )

    @property
    def session_lifetime(self) -> timedelta:
        return timedelta(hours=self.settings.staff.session_hours)

    @property
    def credential_lifetime(self) -> timedelta:
        return timedelta(seconds=self.settings.staff.credential_seconds)

    def issue(self, actor: Actor, via: str) -> str:
        log.info("signed in: %s (%s) via %s", actor.staff_id, actor.role.value, via)
        return sign_session(self.key, actor, datetime.now(UTC), self.session_lifetime, via)

    def session(self, token: str | None) -> Session:
        if not token:
            raise NotSignedIn("not signed in")
        try:
            session = verify_session([self.key.public_key()], token, datetime.now(UTC))
        except CredentialError as error:
            raise NotSignedIn(str(error)) from None
        # Local accounts are checked again (removed, disabled, role changed); an OIDC session
        # lasts until it expires, as the provider's own session would.
        if session.via in ("password", "cli") and not self.accounts.current(session.actor):
            raise NotSignedIn("the account was removed or its role changed: sign in again")
        return session

    def from_cookie(self, request: Request) -> Session:
        return self.session(request.cookies.get(SESSION_COOKIE))

    def from_bearer(self, request: Request) -> Session:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise NotSignedIn("send Authorization: Bearer <token> (`accord login`)")
        return self.session(token.strip())

    def authority(self, actor: Actor) -> ApprovalAuthority:
        """What the actor's role may approve under the default policy: for the desk's queues
        and buttons only — the case checks the policy it runs under."""
        return self.role_authority.get(actor.role, ApprovalAuthority.AUTOMATIC)


def csrf_matches(session: Session, offered: str | None) -> bool:
    return offered is not None and hmac.compare_digest(session.csrf, offered)


def new_login_secret() -> str:
    return secrets.token_urlsafe(24)
