"""Signed staff credentials (JWT, EdDSA with Ed25519; PyJWT).

*Action credential* (audience ``accord-case``): the desk signs it for the signed-in staff member
at the moment they act — their staff id and role, the case, and a SHA-256 of the action itself —
and it lasts minutes. The case workflow verifies it before the rules see the action
(``verify_action``): a forged staff id, a role the desk never gave, a credential copied from
another action or case, or an expired one is refused. Because it is bound to one action on one
case, the copy that stays in the case's history is worth nothing to anyone who reads it.

*Session token* (audience ``accord-desk``): what a desk sign-in (cookie) or `accord login`
(bearer) holds; the desk checks it, and the account behind it, on every request.

The workflow calls ``verify_action`` from its update validator, which Temporal runs only when an
action arrives (never on replay); the handler reads the already-verified claims with
``read_actor``, which works on replay whatever keys the worker holds by then.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import ValidationError

from schemas.staff import Actor, StaffRole

ISSUER = "accord"
ACTION_AUDIENCE = "accord-case"
SESSION_AUDIENCE = "accord-desk"
ALGORITHM = "EdDSA"
CLOCK_LEEWAY = timedelta(seconds=60)
"""Tolerated clock difference between the desk and the Temporal server."""


class CredentialError(ValueError):
    """The credential does not authenticate the action; the message says why, in one line."""


def action_digest(action: Any) -> str:
    """Of ``action.signed_content()``: the action as JSON, without its credential."""
    return hashlib.sha256(action.signed_content()).hexdigest()


def sign_action(
    key: Ed25519PrivateKey,
    actor: Actor,
    case_id: str,
    action: Any,
    now: datetime,
    lifetime: timedelta,
) -> str:
    """A credential for ``actor`` to take ``action`` (without its credential) on ``case_id``."""
    claims = {
        "iss": ISSUER,
        "aud": ACTION_AUDIENCE,
        "sub": actor.staff_id,
        "role": actor.role.value,
        "case": case_id,
        "act": action_digest(action),
        "iat": int(now.timestamp()),
        "exp": int((now + lifetime).timestamp()),
    }
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def verify_action(
    keys: Sequence[Ed25519PublicKey], credential: str, case_id: str, action: Any, now: datetime
) -> Actor:
    """The actor ``credential`` authenticates for ``action`` on ``case_id`` at ``now``; raises
    ``CredentialError`` with the reason otherwise."""
    claims = _verified(keys, credential, ACTION_AUDIENCE, now)
    if claims.get("case") != case_id:
        raise CredentialError("the credential was signed for another case")
    if claims.get("act") != action_digest(action):
        raise CredentialError("the credential was signed for another action")
    return _actor(claims)


def read_actor(credential: str | None) -> Actor | None:
    """The actor named in a credential the validator already verified (no key needed)."""
    if credential is None:
        return None
    try:
        claims = jwt.decode(credential, options={"verify_signature": False})
        return _actor(claims)
    except (jwt.InvalidTokenError, CredentialError):
        return None


@dataclass(frozen=True)
class Session:
    actor: Actor
    csrf: str
    """Forms must send this back: only a page the desk rendered knows it."""
    expires_at: datetime
    via: str
    """``password``, ``oidc`` or ``cli``."""


def sign_session(
    key: Ed25519PrivateKey, actor: Actor, now: datetime, lifetime: timedelta, via: str
) -> str:
    claims = {
        "iss": ISSUER,
        "aud": SESSION_AUDIENCE,
        "sub": actor.staff_id,
        "role": actor.role.value,
        "csrf": secrets.token_urlsafe(24),
        "via": via,
        "iat": int(now.timestamp()),
        "exp": int((now + lifetime).timestamp()),
    }
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def verify_session(keys: Sequence[Ed25519PublicKey], token: str, now: datetime) -> Session:
    claims = _verified(keys, token, SESSION_AUDIENCE, now)
    csrf = claims.get("csrf")
    if not isinstance(csrf, str) or not csrf:
        raise CredentialError("the session token has no CSRF secret")
    return Session(
        actor=_actor(claims),
        csrf=csrf,
        expires_at=datetime.fromtimestamp(int(claims["exp"]), now.tzinfo),
        via=str(claims.get("via", "")),
    )


def _verified(
    keys: Sequence[Ed25519PublicKey], token: str, audience: str, now: datetime
) -> dict[str, Any]:
    if not keys:
        raise CredentialError("this worker holds no staff verify key (ACCORD_STAFF__VERIFY_KEYS)")
    problem = "no key"
    for key in keys:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=audience,
                issuer=ISSUER,
                # Time is checked below against the caller's clock (the workflow's, in a case).
                options={
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "require": ["exp", "iat", "sub", "aud", "iss"],
                },
            )
        except jwt.InvalidSignatureError:
            problem = "its signature does not verify"
            continue
        except jwt.InvalidTokenError as error:
            raise CredentialError(f"not a valid staff credential: {error}") from None
        expires = int(claims["exp"])
        issued = int(claims["iat"])
        stamp = now.timestamp()
        if stamp > expires + CLOCK_LEEWAY.total_seconds():
            raise CredentialError("the credential has expired: sign in again")
        if stamp < issued - CLOCK_LEEWAY.total_seconds():
            raise CredentialError("the credential is not valid yet (clock skew?)")
        return claims
    raise CredentialError(f"not a valid staff credential: {problem}")


def _actor(claims: dict[str, Any]) -> Actor:
    try:
        return Actor(staff_id=str(claims.get("sub", "")), role=StaffRole(str(claims.get("role"))))
    except (ValueError, ValidationError):
        raise CredentialError("the credential names no valid staff id and role") from None


# --- the worker's keys ---------------------------------------------------------------------

_INSTALLED: list[Ed25519PublicKey] = []


def install_verify_keys(keys: Sequence[Ed25519PublicKey]) -> None:
    """Set the keys this process's case workflows verify credentials with (the worker does this
    at start; the module is passed through the sandbox, so every case sees them)."""
    _INSTALLED[:] = list(keys)


def installed_verify_keys() -> list[Ed25519PublicKey]:
    return list(_INSTALLED)
