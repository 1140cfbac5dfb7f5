"""The staff signing key (Ed25519) and the public keys that verify what it signed.

In production the desk holds the private key (``ACCORD_STAFF__SIGNING_KEY``) and workers only
the public keys (``ACCORD_STAFF__VERIFY_KEYS``): a worker, or anyone who reads its settings,
cannot mint a credential. In development neither is set and both come from one key file in the
data dir, created by whichever process needs it first.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from settings import Settings


class StaffKeyError(ValueError):
    """A key is missing or malformed; the message says which setting to fix."""


def new_signing_key_pem() -> str:
    key = Ed25519PrivateKey.generate()
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def public_key_pem(signing_key: Ed25519PrivateKey) -> str:
    return (
        signing_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def key_text(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The raw 32 bytes, base64: one line, easy to put in an environment variable."""
    raw = key.private_bytes_raw() if isinstance(key, Ed25519PrivateKey) else key.public_bytes_raw()
    return base64.b64encode(raw).decode()


def parse_signing_key(text: str, where: str) -> Ed25519PrivateKey:
    """PEM, or the raw key in base64 (`accord staff new-key`)."""
    try:
        if text.lstrip().startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(text.encode(), password=None)
        else:
            key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(text, validate=True))
    except (ValueError, TypeError, binascii.Error) as error:
        raise StaffKeyError(f"{where}: not an Ed25519 private key ({error})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise StaffKeyError(f"{where}: must be an Ed25519 key (`accord staff new-key`)")
    return key


def parse_verify_key(text: str, where: str) -> Ed25519PublicKey:
    """PEM, or the raw key in base64 (`accord staff public-key`)."""
    try:
        if text.lstrip().startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode())
        else:
            key = Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))
    except (ValueError, TypeError, binascii.Error) as error:
        raise StaffKeyError(f"{where}: not an Ed25519 public key ({error})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise StaffKeyError(f"{where}: must be an Ed25519 public key")
    return key


def development_key(path: Path) -> Ed25519PrivateKey:
    """The key in ``path``, created (mode 0600) if there is none. Safe when several processes
    start at once: the file appears whole or not at all (link of a finished temporary file)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".key-")
        try:
            with os.fdopen(descriptor, "w") as file:
                file.write(new_signing_key_pem())
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
        finally:
            os.unlink(temporary)
    return parse_signing_key(path.read_text(), str(path))


def signing_key(settings: Settings) -> Ed25519PrivateKey:
    """The key the desk and administrators sign with."""
    staff = settings.staff
    if staff.signing_key is not None:
        return parse_signing_key(staff.signing_key.get_secret_value(), "ACCORD_STAFF__SIGNING_KEY")
    if staff.verify_key_texts():
        raise StaffKeyError(
            "ACCORD_STAFF__SIGNING_KEY is not set (only verify keys are): this process cannot "
            "sign staff credentials"
        )
    return development_key(settings.staff_key_file)


def verify_keys(settings: Settings) -> list[Ed25519PublicKey]:
    """The public keys a worker accepts credentials from."""
    texts = settings.staff.verify_key_texts()
    if texts:
        return [
            parse_verify_key(text, f"ACCORD_STAFF__VERIFY_KEYS (key {index + 1})")
            for index, text in enumerate(texts)
        ]
    return [signing_key(settings).public_key()]
