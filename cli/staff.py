"""`accord staff …` (local accounts, keys), `accord login` / `logout` (a staff token for the
CLI, issued by the desk) and `accord desk` (serve the desk)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import httpx

from schemas.staff import StaffRole

ROLES = [role.value for role in StaffRole]


@click.command()
def desk() -> None:
    """Serve the operations desk on desk.host:desk.port (a component of `accord stack up`)."""
    from desk.server import run_desk
    from settings import get_settings

    asyncio.run(run_desk(get_settings()))


@click.group()
def staff() -> None:
    """Staff accounts of the desk (development and small installations) and signing keys."""


@staff.command("add")
@click.argument("staff_id")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from standard input (scripts)."
)
def add(staff_id: str, role: str, password_stdin: bool) -> None:
    """Create or replace STAFF_ID (an opaque id such as tl-1, never a name) with ROLE."""
    from settings import get_settings
    from staff.accounts import Accounts, AccountsError

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    accounts = Accounts(get_settings().staff_accounts_file)
    try:
        accounts.add(staff_id, StaffRole(role), password)
    except AccountsError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"{staff_id}: {role} ({accounts.path})")


@staff.command("remove")
@click.argument("staff_id")
def remove(staff_id: str) -> None:
    """Remove STAFF_ID: its desk sessions and CLI tokens stop working at once."""
    from settings import get_settings
    from staff.accounts import Accounts, AccountsError

    try:
        Accounts(get_settings().staff_accounts_file).remove(staff_id)
    except AccountsError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"{staff_id} removed")


@staff.command("list")
def list_accounts() -> None:
    """Staff ids and roles (no password hashes)."""
    from settings import get_settings
    from staff.accounts import Accounts, AccountsError

    try:
        accounts = Accounts(get_settings().staff_accounts_file).load()
    except AccountsError as error:
        raise click.ClickException(str(error)) from None
    for account in accounts.values():
        state = " (disabled)" if account.disabled else ""
        click.echo(f"{account.staff_id}\t{account.role.value}{state}")


@staff.command("new-key")
def new_key() -> None:
    """Print a new Ed25519 signing key (base64) for ACCORD_STAFF__SIGNING_KEY (the desk)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from staff.keys import key_text

    click.echo(key_text(Ed25519PrivateKey.generate()))


@staff.command("public-key")
def public_key() -> None:
    """Print the public key of the configured signing key (base64), for the workers'
    ACCORD_STAFF__VERIFY_KEYS (a JSON list: '["<key>"]')."""
    from settings import get_settings
    from staff.keys import StaffKeyError, key_text, signing_key

    try:
        click.echo(key_text(signing_key(get_settings()).public_key()))
    except StaffKeyError as error:
        raise click.ClickException(str(error)) from None


# --- the CLI's own sign-in -------------------------------------------------------------------


def token_path() -> Path:
    from settings import get_settings

    configured = get_settings().staff.token_file
    if configured is not None:
        return configured
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "accord" / "token"


def load_token() -> dict[str, Any] | None:
    path = token_path()
    if not path.exists():
        return None
    try:
        saved: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    expires = datetime.fromisoformat(saved.get("expires_at", "1970-01-01T00:00:00+00:00"))
    return saved if expires > datetime.now(UTC) else None


@click.command()
@click.option("--staff-id", prompt=True, help="Your staff id.")
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from standard input (scripts)."
)
@click.option("--desk", "desk_url", help="The desk's URL (default: desk.url from settings).")
def login(staff_id: str, password_stdin: bool, desk_url: str | None) -> None:
    """Sign in to the desk; the CLI then acts as you until the token expires."""
    from settings import get_settings

    url = (desk_url or get_settings().desk.url).rstrip("/")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("Password", hide_input=True)
    try:
        answer = httpx.post(
            f"{url}/api/login", json={"staff_id": staff_id, "password": password}, timeout=10
        )
    except httpx.HTTPError:
        raise click.ClickException(
            f"cannot reach the desk at {url} — is the stack running? `accord stack status`"
        ) from None
    if answer.status_code != 200:
        raise click.ClickException(f"sign-in refused: {api_message(answer)}")
    body = answer.json()
    path = token_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        json.dump({**body, "desk": url}, file)
    click.echo(f"signed in as {body['staff_id']} ({body['role']}) until {body['expires_at']}")


@click.command()
def logout() -> None:
    """Forget the CLI's staff token."""
    path = token_path()
    if path.exists():
        path.unlink()
    click.echo("signed out")


def api_message(answer: httpx.Response) -> str:
    try:
        return str(answer.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {answer.status_code}"
