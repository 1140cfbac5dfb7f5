"""The embedded e-signature service: envelopes, a signing page, completion callbacks.

One envelope per agreement (``Idempotency-Key``: the agreement id); ids are random, so they
never repeat across restarts. An envelope expires at its ``expires_at``. The signer opens the
envelope's ``signing_url`` (a server-rendered page), reads the agreement, and signs or declines;
the service then posts an ``EnvelopeEvent`` to the envelope's callback URL, signed with
HMAC-SHA256, from a durable outbox that retries with back-off until it is acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal

import httpx
from fastapi import Depends, FastAPI, Form, Header, Query, Request, Response
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from schemas.http.core_banking import IDEMPOTENCY_HEADER
from schemas.http.esign import (
    SIGNATURE_HEADER,
    Document,
    Envelope,
    EnvelopeEvent,
    EnvelopeRequest,
    EnvelopeStateName,
)
from services.common import (
    Faults,
    ServiceError,
    add_health,
    bearer_auth,
    documented_errors,
    install_error_handlers,
    iso,
    open_database,
    utc_now,
)
from settings import Settings

log = logging.getLogger("accord.services.esign")
NAME = "esign"
TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")
DELIVERY_POLL_SECONDS = 0.5
DELIVERY_TIMEOUT_SECONDS = 10.0
MAX_BACKOFF_SECONDS = 60.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS envelopes (
    envelope_id TEXT PRIMARY KEY,
    reference TEXT NOT NULL UNIQUE,
    signer_id TEXT NOT NULL,
    case_id TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    document TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    signed_at TEXT,
    declined_at TEXT,
    voided_at TEXT,
    callback_url TEXT NOT NULL,
    token TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS envelopes_by_signer ON envelopes (signer_id);
CREATE TABLE IF NOT EXISTS deliveries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    envelope_id TEXT NOT NULL,
    url TEXT NOT NULL,
    body TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    delivered_at TEXT,
    failed_at TEXT,
    last_error TEXT
);
"""


def database_path(settings: Settings) -> Path:
    return settings.data_dir.resolve() / "services" / "esign.db"


def sign_body(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _request_hash(request: EnvelopeRequest) -> str:
    """What makes two requests the same envelope (the callback URL may move)."""
    fields = request.model_dump(mode="json", exclude={"callback_url"})
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


class EnvelopeStore:
    def __init__(self, connection: sqlite3.Connection, public_url: str) -> None:
        self.db = connection
        self.public_url = public_url.rstrip("/")
        self.delivery_added = asyncio.Event()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _envelope(self, row: sqlite3.Row) -> Envelope:
        def moment(name: str) -> datetime | None:
            return datetime.fromisoformat(row[name]) if row[name] else None

        return Envelope(
            envelope_id=row["envelope_id"],
            reference=row["reference"],
            signer_id=row["signer_id"],
            case_id=row["case_id"],
            state=EnvelopeStateName(row["state"]),
            created_at=datetime.fromisoformat(row["created_at"]),
            expires_at=datetime.fromisoformat(row["expires_at"]),
            signed_at=moment("signed_at"),
            declined_at=moment("declined_at"),
            voided_at=moment("voided_at"),
            signing_url=f"{self.public_url}/sign/{row['envelope_id']}?token={row['token']}",
        )

    def _row(self, envelope_id: str, now: datetime) -> sqlite3.Row:
        self._expire(now)
        row = self.db.execute(
            "SELECT * FROM envelopes WHERE envelope_id = ?", (envelope_id,)
        ).fetchone()
        if row is None:
            raise ServiceError(404, "unknown_envelope", f"no envelope {envelope_id}")
        return row

    def _expire(self, now: datetime) -> None:
        self.db.execute(
            "UPDATE envelopes SET state = 'expired' WHERE state = 'sent' AND expires_at <= ?",
            (iso(now),),
        )

    def create(self, request: EnvelopeRequest, now: datetime) -> tuple[Envelope, bool]:
        digest = _request_hash(request)
        with self._transaction():
            row = self.db.execute(
                "SELECT * FROM envelopes WHERE reference = ?", (request.reference,)
            ).fetchone()
            if row is not None:
                if row["request_hash"] != digest:
                    raise ServiceError(
                        409,
                        "idempotency_conflict",
                        f"an envelope for {request.reference} exists with another document",
                    )
                return self._envelope(row), False
            envelope_id = f"env-{uuid.uuid4().hex}"
            self.db.execute(
                "INSERT INTO envelopes (envelope_id, reference, signer_id, case_id, "
                "request_hash, document, state, created_at, expires_at, callback_url, token) "
                "VALUES (?, ?, ?, ?, ?, ?, 'sent', ?, ?, ?, ?)",
                (
                    envelope_id,
                    request.reference,
                    request.signer_id,
                    request.case_id,
                    digest,
                    request.document.model_dump_json(),
                    iso(now),
                    iso(request.expires_at),
                    request.callback_url,
                    secrets.token_urlsafe(16),
                ),
            )
        return self.get(envelope_id, now), True

    def get(self, envelope_id: str, now: datetime) -> Envelope:
        return self._envelope(self._row(envelope_id, now))

    def document(self, envelope_id: str, now: datetime) -> Document:
        return Document.model_validate_json(self._row(envelope_id, now)["document"])

    def find(self, reference: str | None, signer_id: str | None, now: datetime) -> list[Envelope]:
        self._expire(now)
        clauses, values = [], []
        for column, value in (("reference", reference), ("signer_id", signer_id)):
            if value is not None:
                clauses.append(f"{column} = ?")
                values.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self.db.execute(f"SELECT * FROM envelopes{where} ORDER BY created_at", values)  # noqa: S608 - column names are ours
        return [self._envelope(row) for row in rows]

    def void(self, envelope_id: str, now: datetime) -> Envelope:
        with self._transaction():
            row = self._row(envelope_id, now)
            state = EnvelopeStateName(row["state"])
            if state is EnvelopeStateName.SIGNED:
                raise ServiceError(409, "already_signed", f"{envelope_id} is signed")
            if state is EnvelopeStateName.SENT:
                self.db.execute(
                    "UPDATE envelopes SET state = 'voided', voided_at = ? WHERE envelope_id = ?",
                    (iso(now), envelope_id),
                )
        return self.get(envelope_id, now)

    def check_token(self, envelope_id: str, token: str, now: datetime) -> None:
        row = self._row(envelope_id, now)
        if not hmac.compare_digest(row["token"].encode(), token.encode()):
            raise ServiceError(403, "forbidden", "this signing link is not valid")

    def decide(
        self, envelope_id: str, decision: Literal["sign", "decline"], now: datetime
    ) -> Envelope:
        """The signer's act: recorded, and its callback queued in the same transaction."""
        with self._transaction():
            row = self._row(envelope_id, now)
            if row["state"] != EnvelopeStateName.SENT:
                raise ServiceError(
                    409, "not_open", f"{envelope_id} can no longer be signed ({row['state']})"
                )
            column = "signed_at" if decision == "sign" else "declined_at"
            state = "signed" if decision == "sign" else "declined"
            self.db.execute(
                f"UPDATE envelopes SET state = ?, {column} = ? WHERE envelope_id = ?",  # noqa: S608
                (state, iso(now), envelope_id),
            )
            event = EnvelopeEvent(
                event_id=f"{envelope_id}-{state}",
                type="envelope.signed" if decision == "sign" else "envelope.declined",
                envelope_id=envelope_id,
                reference=row["reference"],
                case_id=row["case_id"],
                occurred_at=now,
                signed_at=now if decision == "sign" else None,
            )
            self.db.execute(
                "INSERT OR IGNORE INTO deliveries (event_id, envelope_id, url, body, "
                "next_attempt_at) VALUES (?, ?, ?, ?, ?)",
                (event.event_id, envelope_id, row["callback_url"], event.model_dump_json(),
                 iso(now)),
            )  # fmt: skip
        self.delivery_added.set()
        return self.get(envelope_id, now)

    def due_deliveries(self, now: datetime) -> list[sqlite3.Row]:
        return self.db.execute(
            "SELECT * FROM deliveries WHERE delivered_at IS NULL AND failed_at IS NULL "
            "AND next_attempt_at <= ? ORDER BY seq LIMIT 50",
            (iso(now),),
        ).fetchall()

    def delivery_result(
        self, seq: int, attempts: int, error: str | None, max_attempts: int, now: datetime
    ) -> None:
        if error is None:
            self.db.execute(
                "UPDATE deliveries SET attempts = ?, delivered_at = ?, last_error = NULL "
                "WHERE seq = ?",
                (attempts, iso(now), seq),
            )
        elif attempts >= max_attempts:
            self.db.execute(
                "UPDATE deliveries SET attempts = ?, failed_at = ?, last_error = ? WHERE seq = ?",
                (attempts, iso(now), error, seq),
            )
        else:
            backoff = min(MAX_BACKOFF_SECONDS, 0.5 * 2 ** (attempts - 1))
            self.db.execute(
                "UPDATE deliveries SET attempts = ?, next_attempt_at = ?, last_error = ? "
                "WHERE seq = ?",
                (attempts, iso(now + timedelta(seconds=backoff)), error, seq),
            )


class CallbackSender:
    """Delivers the outbox: at least once, in order per envelope, with back-off."""

    def __init__(self, settings: Settings, store: EnvelopeStore) -> None:
        self.settings = settings
        self.store = store

    async def run(self) -> None:
        secret = self.settings.esign.webhook_secret
        async with httpx.AsyncClient(timeout=DELIVERY_TIMEOUT_SECONDS) as client:
            while True:
                for row in self.store.due_deliveries(utc_now()):
                    body = row["body"].encode()
                    headers = {"Content-Type": "application/json"}
                    if secret is not None:
                        headers[SIGNATURE_HEADER] = sign_body(secret.get_secret_value(), body)
                    error: str | None = None
                    try:
                        answer = await client.post(row["url"], content=body, headers=headers)
                        if not answer.is_success:
                            error = f"HTTP {answer.status_code}: {answer.text[:200]}"
                    except httpx.HTTPError as failure:
                        error = f"{type(failure).__name__}: {failure}"
                    if error is not None:
                        log.warning("callback %s not delivered: %s", row["event_id"], error)
                    self.store.delivery_result(
                        row["seq"],
                        row["attempts"] + 1,
                        error,
                        self.settings.esign.callback_max_attempts,
                        utc_now(),
                    )
                self.store.delivery_added.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.store.delivery_added.wait(), DELIVERY_POLL_SECONDS)


def create_app(settings: Settings) -> FastAPI:
    store = EnvelopeStore(open_database(database_path(settings), SCHEMA), settings.esign.url)
    sender = CallbackSender(settings, store)
    faults = Faults()
    auth = bearer_auth(settings.esign.token)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(sender.run())
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    app = FastAPI(
        title="E-signature (Accord's contract)",
        version="1.0.0",
        summary="Envelopes for signing agreements; completion callbacks to Accord.",
        description=(
            "One envelope per agreement (`Idempotency-Key`: the agreement id). When the signer "
            "signs or declines, the provider posts an `EnvelopeEvent` to the envelope's "
            f"`callback_url`, with `{SIGNATURE_HEADER}: sha256=<HMAC-SHA256 of the body>` under "
            "the shared webhook secret, and retries until it gets a 2xx. Errors are `ErrorBody`; "
            "each says whether a client may retry it (`x-retryable`)."
        ),
        lifespan=lifespan,
    )
    app.state.store = store
    app.state.faults = faults
    install_error_handlers(app)
    add_health(app, NAME, faults)
    app.include_router(faults.router(auth))

    @app.post(
        "/v1/envelopes",
        operation_id="create_envelope",
        tags=["envelopes"],
        status_code=201,
        responses={
            200: {"model": Envelope, "description": "A replay: the envelope already opened."},
            **documented_errors(409),
        },
        dependencies=[Depends(auth), Depends(faults.guard("create_envelope"))],
    )
    async def create_envelope(
        request: EnvelopeRequest,
        response: Response,
        idempotency_key: Annotated[str, Header(alias=IDEMPOTENCY_HEADER, min_length=1)],
    ) -> Envelope:
        """Open an envelope for the signer. The `reference` (the agreement id) is the
        idempotency key (send it as `Idempotency-Key` too): a repeat returns the envelope
        already opened, with another document 409."""
        envelope, created = store.create(request, utc_now())
        faults.after("create_envelope")
        response.status_code = 201 if created else 200
        return envelope

    @app.get(
        "/v1/envelopes/{envelope_id}",
        operation_id="read_envelope",
        tags=["envelopes"],
        responses=documented_errors(404),
        dependencies=[Depends(auth), Depends(faults.guard("read_envelope"))],
    )
    async def read_envelope(envelope_id: str) -> Envelope:
        return store.get(envelope_id, utc_now())

    @app.get(
        "/v1/envelopes",
        operation_id="find_envelopes",
        tags=["envelopes"],
        responses=documented_errors(),
        dependencies=[Depends(auth), Depends(faults.guard("find_envelopes"))],
    )
    async def find_envelopes(
        reference: Annotated[str | None, Query(max_length=128)] = None,
        signer_id: Annotated[str | None, Query(max_length=64)] = None,
    ) -> list[Envelope]:
        """Envelopes by agreement (`reference`) or signer, oldest first."""
        return store.find(reference, signer_id, utc_now())

    @app.post(
        "/v1/envelopes/{envelope_id}/void",
        operation_id="void_envelope",
        tags=["envelopes"],
        responses=documented_errors(404, 409),
        dependencies=[Depends(auth), Depends(faults.guard("void_envelope"))],
    )
    async def void_envelope(envelope_id: str) -> Envelope:
        """Withdraw an unsigned envelope (idempotent; an expired or declined one stays so).
        A signed envelope cannot be voided: 409 `already_signed`."""
        envelope = store.void(envelope_id, utc_now())
        faults.after("void_envelope")
        return envelope

    # --- the signer's pages (not part of the API a client calls) -------------------------

    @app.get("/sign/{envelope_id}", include_in_schema=False, response_class=HTMLResponse)
    async def signing_page(request: Request, envelope_id: str, token: str = "") -> HTMLResponse:
        now = utc_now()
        store.check_token(envelope_id, token, now)
        return TEMPLATES.TemplateResponse(
            request,
            "sign.html",
            {
                "envelope": store.get(envelope_id, now),
                "document": store.document(envelope_id, now),
                "token": token,
            },
        )

    @app.post("/sign/{envelope_id}", include_in_schema=False, response_class=HTMLResponse)
    async def signer_decides(
        request: Request,
        envelope_id: str,
        token: Annotated[str, Form()],
        decision: Annotated[Literal["sign", "decline"], Form()],
    ) -> HTMLResponse:
        now = utc_now()
        store.check_token(envelope_id, token, now)
        envelope = store.decide(envelope_id, decision, now)
        log.info("envelope %s %s by its signer", envelope_id, envelope.state.value)
        return TEMPLATES.TemplateResponse(
            request,
            "sign.html",
            {"envelope": envelope, "document": store.document(envelope_id, now), "token": ""},
        )

    @app.get("/signers/{signer_id}", include_in_schema=False, response_class=HTMLResponse)
    async def signer_page(request: Request, signer_id: str) -> HTMLResponse:
        """The embedded stack's stand-in for the provider's e-mail to the signer."""
        return TEMPLATES.TemplateResponse(
            request,
            "signer.html",
            {"signer_id": signer_id, "envelopes": store.find(None, signer_id, utc_now())},
        )

    return app
