"""AES-256-GCM payload codec for Temporal (DESIGN §6).

Every payload the worker, stream processor and CLI send to Temporal — events with amounts,
financial profiles, schedules — is encrypted before it leaves the process, so the Temporal
server, its database and its UI see only ciphertext. Decoding accepts the current key and any
retired key still listed (rotation), and passes through payloads that were never encrypted.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
NONCE_BYTES = 12
TAG_BYTES = 16  # AES-GCM appends a 16-byte authentication tag


class PayloadKeyError(ValueError):
    """A key is malformed, unknown, or does not authenticate the payload."""


def parse_key(encoded: str, key_id: str) -> bytes:
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as error:
        raise PayloadKeyError(f"payload key {key_id!r} is not valid base64") from error
    if len(key) != 32:
        raise PayloadKeyError(f"payload key {key_id!r} must be 32 bytes (AES-256), got {len(key)}")
    return key


def new_key() -> str:
    """A fresh random key, base64 — for `accord codec new-key`."""
    return base64.b64encode(os.urandom(32)).decode()


class EncryptionCodec(PayloadCodec):
    def __init__(self, key_id: str, key: bytes, retired: Mapping[str, bytes] | None = None) -> None:
        self._key_id = key_id
        self._encryptor = AESGCM(key)
        self._decryptors = {key_id: self._encryptor}
        self._decryptors.update({kid: AESGCM(k) for kid, k in (retired or {}).items()})

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._encrypt(payload) for payload in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._decrypt(payload) for payload in payloads]

    def _encrypt(self, payload: Payload) -> Payload:
        nonce = os.urandom(NONCE_BYTES)
        # The key id is authenticated too: a payload cannot be re-labelled to another key.
        ciphertext = self._encryptor.encrypt(
            nonce, payload.SerializeToString(), self._key_id.encode()
        )
        return Payload(
            metadata={"encoding": ENCODING, KEY_ID_METADATA: self._key_id.encode()},
            data=nonce + ciphertext,
        )

    def _decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        key_id = payload.metadata.get(KEY_ID_METADATA, b"").decode()
        decryptor = self._decryptors.get(key_id)
        if decryptor is None:
            raise PayloadKeyError(f"payload encrypted with unknown key {key_id!r}")
        if len(payload.data) < NONCE_BYTES + TAG_BYTES:
            raise PayloadKeyError(
                f"payload too short to be encrypted with key {key_id!r} "
                f"({len(payload.data)} bytes, at least {NONCE_BYTES + TAG_BYTES})"
            )
        nonce, ciphertext = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
        try:
            plaintext = decryptor.decrypt(nonce, ciphertext, key_id.encode())
        except InvalidTag as error:
            raise PayloadKeyError(f"payload failed authentication with key {key_id!r}") from error
        return Payload.FromString(plaintext)
