"""The desk's local accounts (development and small installations): a JSON file of staff ids,
roles and Argon2id password hashes, written by `accord staff add`. Production signs staff in
through the bank's OpenID Connect provider instead (``desk.oidc``).

Staff ids are opaque (``tl-1``, ``S-17``): no names or e-mail addresses, so nothing personal
reaches a case, its audit or the logs.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from schemas.events import OpaqueId
from schemas.staff import Actor, StaffRole

MIN_PASSWORD_LENGTH = 10
_HASHER = PasswordHasher()


class AccountsError(ValueError):
    """The accounts file or a change to it is wrong; the message says how."""


class Account(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    staff_id: OpaqueId
    role: StaffRole
    password_hash: str = Field(min_length=20)
    disabled: bool = False


_ACCOUNTS = TypeAdapter(list[Account])


@dataclass
class Accounts:
    path: Path

    def load(self) -> dict[str, Account]:
        if not self.path.exists():
            return {}
        try:
            accounts = _ACCOUNTS.validate_json(self.path.read_bytes())
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise AccountsError(f"{self.path}: {where}: {first['msg']}") from None
        return {account.staff_id: account for account in accounts}

    def add(self, staff_id: str, role: StaffRole, password: str) -> Account:
        if len(password) < MIN_PASSWORD_LENGTH:
            raise AccountsError(f"the password must be at least {MIN_PASSWORD_LENGTH} characters")
        try:
            account = Account(staff_id=staff_id, role=role, password_hash=_HASHER.hash(password))
        except ValidationError:
            raise AccountsError(
                f"{staff_id!r} is not a valid staff id (letters, digits, . _ : -; no names)"
            ) from None
        accounts = self.load()
        accounts[staff_id] = account
        self._save(accounts)
        return account

    def remove(self, staff_id: str) -> None:
        accounts = self.load()
        if staff_id not in accounts:
            raise AccountsError(f"no account {staff_id} in {self.path}")
        del accounts[staff_id]
        self._save(accounts)

    def authenticate(self, staff_id: str, password: str) -> Actor | None:
        """The actor, if the password is right and the account enabled; None otherwise (the
        caller says only "wrong staff id or password")."""
        account = self.load().get(staff_id)
        if account is None or account.disabled:
            _HASHER.hash(password)  # the same work either way: no timing hint which one it was
            return None
        try:
            _HASHER.verify(account.password_hash, password)
        except (VerificationError, InvalidHashError):
            return None
        return Actor(staff_id=account.staff_id, role=account.role)

    def current(self, actor: Actor) -> bool:
        """The account still exists, is enabled and has the same role (a token issued before a
        role change or removal stops working)."""
        account = self.load().get(actor.staff_id)
        return account is not None and not account.disabled and account.role is actor.role

    def _save(self, accounts: dict[str, Account]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        ordered = sorted(accounts.values(), key=lambda account: account.staff_id)
        body = json.dumps([account.model_dump(mode="json") for account in ordered], indent=2)
        descriptor, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".accounts-")
        with os.fdopen(descriptor, "w") as file:
            file.write(body + "\n")
        os.chmod(temporary, 0o600)
        os.replace(temporary, self.path)
