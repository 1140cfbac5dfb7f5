"""Payload encryption and the codec server."""

from __future__ import annotations

import base64

import pytest
from aiohttp.test_utils import TestClient, TestServer
from google.protobuf import json_format
from pydantic import SecretStr
from temporalio.api.common.v1 import Payload, Payloads

from clients import data_converter
from encryption.codec import ENCODING, EncryptionCodec, PayloadKeyError, new_key, parse_key
from encryption.server import build_codec_app
from schemas.events import LoanPayment
from settings import EncryptionSettings, Settings

pytestmark = pytest.mark.unit

PLAIN = Payload(metadata={"encoding": b"json/plain"}, data=b'{"monthly_income":"8000.00"}')


def codec_with(key_id: str = "k1", **retired: str) -> EncryptionCodec:
    return EncryptionCodec(
        key_id,
        parse_key(KEYS[key_id], key_id),
        {kid: parse_key(KEYS[kid], kid) for kid in retired},
    )


KEYS = {"k1": new_key(), "k0": new_key()}


async def test_round_trip_hides_the_plaintext() -> None:
    codec = codec_with()
    [encrypted] = await codec.encode([PLAIN])
    assert encrypted.metadata["encoding"] == ENCODING
    assert b"monthly_income" not in encrypted.data and b"8000" not in encrypted.data
    assert await codec.decode([encrypted]) == [PLAIN]


async def test_tampered_ciphertext_is_refused() -> None:
    codec = codec_with()
    [encrypted] = await codec.encode([PLAIN])
    flipped = bytes([encrypted.data[-1] ^ 1])
    tampered = Payload(metadata=encrypted.metadata, data=encrypted.data[:-1] + flipped)
    with pytest.raises(PayloadKeyError, match="authentication"):
        await codec.decode([tampered])


async def test_relabelled_key_id_is_refused() -> None:
    [encrypted] = await codec_with("k0").encode([PLAIN])
    relabelled = Payload(
        metadata={**encrypted.metadata, "encryption-key-id": b"k1"}, data=encrypted.data
    )
    with pytest.raises(PayloadKeyError):
        await codec_with("k1", k0="retired").decode([relabelled])


async def test_rotation_decodes_retired_keys_and_refuses_unknown_ones() -> None:
    [old] = await codec_with("k0").encode([PLAIN])
    assert await codec_with("k1", k0="retired").decode([old]) == [PLAIN]
    with pytest.raises(PayloadKeyError, match="unknown key 'k0'"):
        await codec_with("k1").decode([old])


async def test_unencrypted_payloads_pass_through() -> None:
    assert await codec_with().decode([PLAIN]) == [PLAIN]


def test_malformed_keys_are_named() -> None:
    with pytest.raises(PayloadKeyError, match="'bad' is not valid base64"):
        parse_key("not base64!", "bad")
    with pytest.raises(PayloadKeyError, match="32 bytes"):
        parse_key(base64.b64encode(b"short").decode(), "short")


async def test_data_converter_encrypts_only_when_a_key_is_set() -> None:
    event = LoanPayment.model_validate(
        {
            "event_id": "p-1",
            "occurred_at": "2026-11-20T10:00:00+08:00",
            "schema_version": 1,
            "loan_id": "L-1",
            "currency": "CNY",
            "amount": "1234.56",
            "paid_at": "2026-11-20T09:59:00+08:00",
            "channel": "card",
        }
    )
    clear = Settings(_env_file=None)
    secret = Settings(_env_file=None, encryption={"key": KEYS["k1"], "key_id": "k1"})
    [plain_payload] = await data_converter(clear).encode([event])
    [sealed_payload] = await data_converter(secret).encode([event])
    assert b"1234.56" in plain_payload.data
    assert b"1234.56" not in sealed_payload.data
    assert await data_converter(secret).decode([sealed_payload], [LoanPayment]) == [event]


@pytest.fixture
async def codec_client():
    cfg = EncryptionSettings(
        key=SecretStr(KEYS["k1"]), key_id="k1", codec_server_token=SecretStr("staff-token")
    )
    client = TestClient(TestServer(build_codec_app(codec_with(), cfg)))
    await client.start_server()
    yield client
    await client.close()


def _body(*payloads: Payload) -> str:
    return json_format.MessageToJson(Payloads(payloads=list(payloads)))


async def test_codec_server_decodes_for_authorised_staff(codec_client: TestClient) -> None:
    [encrypted] = await codec_with().encode([PLAIN])
    response = await codec_client.post(
        "/decode",
        data=_body(encrypted),
        headers={
            "Authorization": "Bearer staff-token",
            "Origin": "http://localhost:8233",
            "Content-Type": "application/json",
        },
    )
    assert response.status == 200
    assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:8233"
    decoded = json_format.Parse(await response.text(), Payloads())
    assert list(decoded.payloads) == [PLAIN]


async def test_codec_server_refuses_without_the_token(codec_client: TestClient) -> None:
    [encrypted] = await codec_with().encode([PLAIN])
    response = await codec_client.post(
        "/decode", data=_body(encrypted), headers={"Authorization": "Bearer guess"}
    )
    assert response.status == 401
    assert "monthly_income" not in await response.text()


async def test_codec_server_grants_cors_to_the_ui_origin_only(codec_client: TestClient) -> None:
    ui = await codec_client.options("/decode", headers={"Origin": "http://localhost:8233"})
    other = await codec_client.options("/decode", headers={"Origin": "http://evil.example"})
    assert ui.headers.get("Access-Control-Allow-Origin") == "http://localhost:8233"
    assert "Access-Control-Allow-Origin" not in other.headers


@pytest.mark.parametrize(
    ("authorization", "status"),
    [
        ("Bearer staff-token", 200),
        ("bearer staff-token", 200),  # RFC 6750: the scheme is case-insensitive
        ("BEARER   staff-token", 200),
        ("staff-token", 401),  # no scheme
        ("Basic staff-token", 401),
        ("Bearer staff-token extra", 401),
        ("Bearer", 401),
        (None, 401),
    ],
)
async def test_codec_server_reads_authorization_per_rfc_6750(
    codec_client: TestClient, authorization: str | None, status: int
) -> None:
    [encrypted] = await codec_with().encode([PLAIN])
    headers = {} if authorization is None else {"Authorization": authorization}
    response = await codec_client.post("/decode", data=_body(encrypted), headers=headers)
    assert response.status == status


@pytest.mark.parametrize(
    "body",
    [
        _body(Payload(metadata={"encoding": ENCODING, "encryption-key-id": b"k1"}, data=b"abc")),
        _body(Payload(metadata={"encoding": ENCODING, "encryption-key-id": b"k1"}, data=b"")),
        "not json",
        '{"payloads": 3}',
    ],
)
async def test_codec_server_answers_400_to_bad_input(codec_client: TestClient, body: str) -> None:
    response = await codec_client.post(
        "/decode", data=body, headers={"Authorization": "Bearer staff-token"}
    )
    assert response.status == 400
    assert (await response.json())["error"]


def test_codec_server_refuses_to_start_without_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from cli.codec import codec
    from settings import get_settings

    monkeypatch.setenv("ACCORD_ENCRYPTION__KEY", KEYS["k1"])
    monkeypatch.delenv("ACCORD_ENCRYPTION__CODEC_SERVER_TOKEN", raising=False)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(codec, ["serve"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code != 0
    assert "CODEC_SERVER_TOKEN is not set" in result.output
    assert "--insecure-dev" in result.output
