"""Sign-in through the bank's OpenID Connect provider: the authorization code flow with PKCE.

The desk reads the provider's discovery document, sends the browser to its authorization
endpoint with a fresh ``state``, ``nonce`` and PKCE challenge (kept in a short-lived cookie the
desk signs), exchanges the code at the token endpoint with its client secret, and verifies the
ID token (signature against the provider's JWKS, issuer, audience, expiry, nonce) with PyJWT.
The staff id is ``oidc.staff_id_claim``; the role is the highest Accord role any of the person's
provider roles maps to (``oidc.role_map``) — nobody mapped, no access.

Two HTTP calls and a JWT check, written here with httpx and PyJWT: the OAuth library's httpx
integration is deprecated in its current release.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import httpx
import jwt
from fastapi import Request
from fastapi.responses import RedirectResponse

from schemas.staff import Actor, StaffRole
from settings import Settings

if TYPE_CHECKING:
    from desk.auth import DeskAuth

FLOW_COOKIE = "accord_desk_oidc"
FLOW_AUDIENCE = "accord-desk-oidc"
FLOW_MINUTES = 10
ROLE_ORDER = list(StaffRole)
ROLE_NAMES = {role.value for role in StaffRole}
HTTP_TIMEOUT = 10.0


class OidcError(Exception):
    pass


class OidcLogin:
    def __init__(self, settings: Settings, auth: DeskAuth) -> None:
        oidc = settings.oidc
        if oidc.issuer is None or oidc.client_id is None or oidc.client_secret is None:
            raise OidcError("ACCORD_OIDC__ISSUER, __CLIENT_ID and __CLIENT_SECRET are all needed")
        self.settings = settings
        self.auth = auth
        self.issuer = oidc.issuer.rstrip("/")
        self.client_id = oidc.client_id
        self.client_secret = oidc.client_secret.get_secret_value()
        self.redirect_uri = f"{settings.desk.url}/oidc/callback"
        self._discovery: dict[str, Any] | None = None

    async def discovery(self) -> dict[str, Any]:
        if self._discovery is None:
            async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as client:
                answer = await client.get(f"{self.issuer}/.well-known/openid-configuration")
            answer.raise_for_status()
            self._discovery = answer.json()
        return self._discovery

    async def start(self, next_page: str, secure: bool) -> RedirectResponse:
        found = await self.discovery()
        state, nonce, verifier = (secrets.token_urlsafe(24) for _ in range(3))
        challenge = (
            base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            .rstrip(b"=")
            .decode()
        )
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.client_id,
                "redirect_uri": self.redirect_uri,
                "scope": self.settings.oidc.scopes,
                "state": state,
                "nonce": nonce,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        response = RedirectResponse(f"{found['authorization_endpoint']}?{query}", status_code=303)
        now = datetime.now(UTC)
        flow = jwt.encode(
            {
                "aud": FLOW_AUDIENCE,
                "state": state,
                "nonce": nonce,
                "verifier": verifier,
                "next": next_page,
                "exp": int((now + timedelta(minutes=FLOW_MINUTES)).timestamp()),
            },
            self.auth.key,
            algorithm="EdDSA",
        )
        response.set_cookie(
            FLOW_COOKIE,
            flow,
            max_age=FLOW_MINUTES * 60,
            httponly=True,
            secure=secure,
            samesite="lax",  # the provider's redirect back is a cross-site navigation
        )
        return response

    async def finish(self, request: Request) -> tuple[Actor, str]:
        from desk.auth import NotSignedIn

        try:
            flow = jwt.decode(
                request.cookies.get(FLOW_COOKIE, ""),
                self.auth.key.public_key(),
                algorithms=["EdDSA"],
                audience=FLOW_AUDIENCE,
            )
        except jwt.InvalidTokenError:
            raise NotSignedIn("the sign-in took too long or was not started here") from None
        params = request.query_params
        if params.get("error"):
            raise NotSignedIn(f"the identity provider refused: {params.get('error')}")
        if params.get("state") != flow["state"] or not params.get("code"):
            raise NotSignedIn("the identity provider's answer does not match this sign-in")
        found = await self.discovery()
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as client:
            answer = await client.post(
                found["token_endpoint"],
                data={
                    "grant_type": "authorization_code",
                    "code": params["code"],
                    "redirect_uri": self.redirect_uri,
                    "code_verifier": flow["verifier"],
                },
                auth=(self.client_id, self.client_secret),
            )
            if answer.status_code != 200:
                raise NotSignedIn(f"the identity provider refused the code ({answer.status_code})")
            id_token = answer.json().get("id_token")
            keys = (await client.get(found["jwks_uri"])).json()
        claims = self._verified(id_token, keys, flow["nonce"])
        return self._actor(claims), str(flow.get("next") or "/cases")

    def _verified(self, id_token: Any, keys: dict[str, Any], nonce: str) -> dict[str, Any]:
        from desk.auth import NotSignedIn

        if not isinstance(id_token, str):
            raise NotSignedIn("the identity provider sent no ID token")
        try:
            header = jwt.get_unverified_header(id_token)
            key_set = jwt.PyJWKSet.from_dict(keys)
            key = next(k for k in key_set.keys if k.key_id == header.get("kid"))
            claims: dict[str, Any] = jwt.decode(
                id_token,
                key,
                algorithms=[header.get("alg", "RS256")],
                audience=self.client_id,
                issuer=self.issuer,
            )
        except (jwt.InvalidTokenError, jwt.PyJWKError, StopIteration) as error:
            raise NotSignedIn(f"the ID token does not verify: {error}") from None
        if claims.get("nonce") != nonce:
            raise NotSignedIn("the ID token was not issued for this sign-in (nonce)")
        return claims

    def _actor(self, claims: dict[str, Any]) -> Actor:
        from desk.auth import NotSignedIn

        oidc = self.settings.oidc
        staff_id = claims.get(oidc.staff_id_claim)
        given = claims.get(oidc.roles_claim) or []
        provider_roles = [given] if isinstance(given, str) else list(given)
        mapping = oidc.roles()
        roles = [
            StaffRole(mapping[role])
            for role in provider_roles
            if isinstance(role, str) and role in mapping and mapping[role] in ROLE_NAMES
        ]
        if not roles:
            raise NotSignedIn("your identity has no role the desk knows: ask for access")
        role = max(roles, key=ROLE_ORDER.index)
        try:
            return Actor(staff_id=str(staff_id), role=role)
        except ValueError:
            raise NotSignedIn(
                f"the {oidc.staff_id_claim} claim is not an opaque staff id"
            ) from None
