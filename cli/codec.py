"""`accord codec`: payload encryption keys and the codec server for the Temporal UI."""

from __future__ import annotations

import click

from encryption.codec import new_key


@click.group()
def codec() -> None:
    """Payload encryption: keys and the codec server."""


@codec.command("new-key")
def new_key_command() -> None:
    """Print a fresh AES-256 key for ACCORD_ENCRYPTION__KEY."""
    click.echo(new_key())


@codec.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--insecure-dev",
    is_flag=True,
    help="Serve without ACCORD_ENCRYPTION__CODEC_SERVER_TOKEN (anyone who can reach the port "
    "can decrypt): for a laptop only.",
)
def serve(host: str, insecure_dev: bool) -> None:
    """Serve /decode and /encode for the Temporal UI ("Codec Server" setting) and CLI."""
    from aiohttp import web

    from clients import payload_codec
    from encryption.server import build_codec_app
    from settings import get_settings

    settings = get_settings()
    payload = payload_codec(settings.encryption)
    if payload is None:
        raise click.ClickException("ACCORD_ENCRYPTION__KEY is not set: nothing to decode")
    if settings.encryption.codec_server_token is None:
        if not insecure_dev:
            raise click.ClickException(
                "ACCORD_ENCRYPTION__CODEC_SERVER_TOKEN is not set: set it (the Temporal UI "
                "sends it as a bearer token), or pass --insecure-dev on a laptop"
            )
        click.echo(
            "warning: --insecure-dev without a token: anyone who can reach this port "
            "can decrypt payloads",
            err=True,
        )
    web.run_app(
        build_codec_app(payload, settings.encryption),
        host=host,
        port=settings.encryption.codec_server_port,
    )
