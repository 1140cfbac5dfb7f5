"""`accord service ...`: the embedded stand-ins for core banking, e-signature and the contact
gateway, and Accord's webhook receiver; their OpenAPI documents; fault injection."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import click

NAMES = ("core-banking", "esign", "contact", "webhooks")
DEFAULT_OPENAPI_DIR = Path("docs/openapi")


@click.group()
def service() -> None:
    """The embedded external systems (each also a component of `accord stack up`)."""


@service.command("run")
@click.argument("name", type=click.Choice(NAMES))
def run(name: str) -> None:
    """Run one service in the foreground, at the address in settings."""
    from services.registry import run_service
    from settings import get_settings

    asyncio.run(run_service(name, get_settings()))


@service.command("openapi")
@click.argument(
    "directory", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_OPENAPI_DIR
)
def openapi(directory: Path) -> None:
    """Write each service's OpenAPI document (JSON) into DIRECTORY."""
    from services.registry import openapi_documents
    from settings import get_settings

    directory.mkdir(parents=True, exist_ok=True)
    for name, document in openapi_documents(get_settings()).items():
        path = directory / f"{name}.json"
        path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
        click.echo(path)


def _error_rule(text: str) -> dict[str, object]:
    """``OPERATION:STATUS[:COUNT]`` (OPERATION ``*`` for all) -> a fault rule."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[1].isdigit():
        raise click.BadParameter(f"{text!r}: expected OPERATION:STATUS[:COUNT]")
    rule: dict[str, object] = {
        "operation": None if parts[0] == "*" else parts[0],
        "status": int(parts[1]),
    }
    if len(parts) == 3:
        rule["remaining"] = int(parts[2])
    return rule


@service.command("fault")
@click.argument("name", type=click.Choice(NAMES[:3]))
@click.option("--outage/--no-outage", default=False, help="Every call answers 503.")
@click.option("--latency", type=click.FloatRange(0, 300), default=0.0, help="Seconds per call.")
@click.option(
    "--error",
    "errors",
    multiple=True,
    help="OPERATION:STATUS[:COUNT], e.g. read_ledger:503:3 or '*:429' (repeatable).",
)
@click.option("--clear", is_flag=True, help="Remove every fault.")
def fault(name: str, outage: bool, latency: float, errors: tuple[str, ...], clear: bool) -> None:
    """Make a running service fail (for fault tests); a restart of it clears the faults."""
    import httpx

    from services.registry import URL_SETTINGS, base_url
    from settings import get_settings

    settings = get_settings()
    token = getattr(settings, URL_SETTINGS[name]).token
    headers = {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}
    url = f"{base_url(name, settings)}/admin/faults"
    plan = {
        "outage": outage,
        "latency_seconds": latency,
        "errors": [_error_rule(e) for e in errors],
    }
    try:
        if clear:
            answer = httpx.delete(url, headers=headers, timeout=10)
        else:
            answer = httpx.put(url, json=plan, headers=headers, timeout=10)
    except httpx.HTTPError as error:
        raise click.ClickException(f"{name} at {url}: {type(error).__name__}") from None
    if not answer.is_success:
        raise click.ClickException(f"{name}: HTTP {answer.status_code} {answer.text}")
    click.echo(json.dumps(answer.json()))
