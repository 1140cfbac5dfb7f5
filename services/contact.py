"""The embedded contact gateway: SMS, e-mail and phone calls, recorded with their status.

A send is idempotent by its ``Idempotency-Key`` (the case's attempt id): a repeat returns the
first message and contacts nobody again. Delivery is asynchronous, as with a real gateway: a
message is ``queued`` (a call ``ringing``) until ``contact.delivery_seconds`` after it was
accepted, then ``delivered`` (a call ``answered`` or ``unanswered``). The state is in SQLite,
so a restart loses neither messages nor their status. ``/inbox/<recipient>`` shows what each
recipient received.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, Header, Request, Response
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from schemas.contact import ContactChannel
from schemas.http.contact import Message, MessageRequest, MessageStatus
from schemas.http.core_banking import IDEMPOTENCY_HEADER
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

log = logging.getLogger("accord.services.contact")
NAME = "contact"
TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")
# What each template says: the case names a template, the gateway holds the words.
TEXTS = {
    "info_request": "About your overdue loan: please tell us your income and expenses so we "
    "can offer a plan you can afford.",
    "info_reminder": "Reminder: we are waiting for your financial situation.",
    "offer": "We have repayment plans for you. Please choose one.",
    "offer_reminder": "Reminder: your repayment plan offers are waiting for your answer.",
    "signature_request": "Your repayment agreement is ready to sign.",
    "signature_reminder": "Reminder: your repayment agreement is waiting for your signature.",
}

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    message_id TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    request_hash TEXT NOT NULL,
    channel TEXT NOT NULL,
    recipient TEXT NOT NULL,
    template TEXT NOT NULL,
    created_at TEXT NOT NULL,
    final_status TEXT NOT NULL,
    final_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_recipient ON messages (recipient, created_at);
"""


def database_path(settings: Settings) -> Path:
    return settings.data_dir.resolve() / "services" / "contact.db"


class MessageLog:
    def __init__(self, connection: sqlite3.Connection, settings: Settings) -> None:
        self.db = connection
        self.settings = settings

    def _message(self, row: sqlite3.Row, now: datetime) -> Message:
        channel = ContactChannel(row["channel"])
        final_at = datetime.fromisoformat(row["final_at"])
        if now >= final_at:
            status, updated = MessageStatus(row["final_status"]), final_at
        else:
            pending = (
                MessageStatus.RINGING if channel is ContactChannel.PHONE else MessageStatus.QUEUED
            )
            status, updated = pending, datetime.fromisoformat(row["created_at"])
        return Message(
            message_id=row["message_id"],
            idempotency_key=row["idempotency_key"],
            channel=channel,
            to=row["recipient"],
            template=row["template"],
            status=status,
            created_at=datetime.fromisoformat(row["created_at"]),
            updated_at=updated,
        )

    def send(self, key: str, request: MessageRequest, now: datetime) -> tuple[Message, bool]:
        digest = hashlib.sha256(
            json.dumps(request.model_dump(mode="json"), sort_keys=True).encode()
        ).hexdigest()
        self.db.execute("BEGIN IMMEDIATE")
        try:
            row = self.db.execute(
                "SELECT * FROM messages WHERE idempotency_key = ?", (key,)
            ).fetchone()
            created = row is None
            if row is not None and row["request_hash"] != digest:
                raise ServiceError(
                    409, "idempotency_conflict", f"{IDEMPOTENCY_HEADER} {key} was another message"
                )
            if row is None:
                if request.channel.value == ContactChannel.PHONE:
                    final = (
                        MessageStatus.ANSWERED
                        if self.settings.contact.phone_answered
                        else MessageStatus.UNANSWERED
                    )
                else:
                    final = MessageStatus.DELIVERED
                delay = timedelta(seconds=self.settings.contact.delivery_seconds)
                self.db.execute(
                    "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        f"msg-{uuid.uuid4().hex}",
                        key,
                        digest,
                        request.channel.value,
                        request.to,
                        request.template,
                        iso(now),
                        final.value,
                        iso(now + delay),
                    ),
                )
                row = self.db.execute(
                    "SELECT * FROM messages WHERE idempotency_key = ?", (key,)
                ).fetchone()
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
        return self._message(row, now), created

    def get(self, message_id: str, now: datetime) -> Message:
        row = self.db.execute(
            "SELECT * FROM messages WHERE message_id = ?", (message_id,)
        ).fetchone()
        if row is None:
            raise ServiceError(404, "unknown_message", f"no message {message_id}")
        return self._message(row, now)

    def to(self, recipient: str, now: datetime) -> list[Message]:
        rows = self.db.execute(
            "SELECT * FROM messages WHERE recipient = ? ORDER BY created_at", (recipient,)
        )
        return [self._message(row, now) for row in rows]

    def recipients(self) -> list[sqlite3.Row]:
        return self.db.execute(
            "SELECT recipient AS 'to', COUNT(*) AS count, MAX(created_at) AS last "
            "FROM messages GROUP BY recipient ORDER BY last DESC LIMIT 500"
        ).fetchall()


def create_app(settings: Settings) -> FastAPI:
    messages = MessageLog(open_database(database_path(settings), SCHEMA), settings)
    faults = Faults()
    auth = bearer_auth(settings.contact.token)

    app = FastAPI(
        title="Contact gateway (Accord's contract)",
        version="1.0.0",
        summary="SMS, e-mail and phone calls with their delivery or answer status.",
        description=(
            "Send with `Idempotency-Key: <attempt id>`; the answer has the message's status, "
            "final or not (`queued`, `ringing`): poll `GET /v1/messages/{message_id}` until it "
            "is final. Errors are `ErrorBody`; each says whether a client may retry it "
            "(`x-retryable`)."
        ),
    )
    app.state.messages = messages
    app.state.faults = faults
    install_error_handlers(app)
    add_health(app, NAME, faults)
    app.include_router(faults.router(auth))

    @app.post(
        "/v1/messages",
        operation_id="send_message",
        tags=["messages"],
        status_code=201,
        responses={
            200: {"model": Message, "description": "A replay: the message already sent."},
            **documented_errors(409),
        },
        dependencies=[Depends(auth), Depends(faults.guard("send_message"))],
    )
    async def send_message(
        request: MessageRequest,
        response: Response,
        idempotency_key: Annotated[
            str, Header(alias=IDEMPOTENCY_HEADER, min_length=1, max_length=200)
        ],
    ) -> Message:
        """Send one message or place one call."""
        message, created = messages.send(idempotency_key, request, utc_now())
        faults.after("send_message")
        response.status_code = 201 if created else 200
        return message

    @app.get(
        "/v1/messages/{message_id}",
        operation_id="read_message",
        tags=["messages"],
        responses=documented_errors(404),
        dependencies=[Depends(auth), Depends(faults.guard("read_message"))],
    )
    async def read_message(message_id: str) -> Message:
        return messages.get(message_id, utc_now())

    @app.get("/", include_in_schema=False, response_class=HTMLResponse)
    async def recipients_page(request: Request) -> HTMLResponse:
        return TEMPLATES.TemplateResponse(
            request, "recipients.html", {"recipients": messages.recipients()}
        )

    @app.get("/inbox/{recipient}", include_in_schema=False, response_class=HTMLResponse)
    async def inbox_page(request: Request, recipient: str) -> HTMLResponse:
        return TEMPLATES.TemplateResponse(
            request,
            "inbox.html",
            {"to": recipient, "messages": messages.to(recipient, utc_now()), "texts": TEXTS},
        )

    return app
