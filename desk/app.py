"""The desk's web app: pages for staff (server-rendered, Jinja2, no script needed) and the JSON
API `accord case` uses with an `accord login` token.

Every action is built here from the signed-in staff member's session — the field naming who
acts is filled from it — then signed for that staff member, that case and that action
(``desk.calls.sign_for``) and sent to the case, which verifies it and checks the authority
itself. Answers: ``401`` not signed in, ``403`` not allowed (a bad CSRF secret, another staff id,
above the role's authority), ``409`` refused by the case with its reason, ``404`` no such case,
``503`` Temporal unreachable.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Body, Depends, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ValidationError
from temporalio.client import Client

from decisions.schedules import schedule_of
from desk import calls
from desk.auth import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    DeskAuth,
    NotSignedIn,
    csrf_matches,
    new_login_secret,
)
from desk.cases import (
    QUEUES,
    SORT_KEYS,
    CaseFilter,
    CaseList,
    band_text,
    list_cases,
    row_record,
    rows_csv,
    sort_rows,
)
from desk.timeline import audit_csv, timeline
from schemas.assessment import Tier
from schemas.case import CaseStage, CheckpointKind
from schemas.events import ProductType
from schemas.plan import ApprovalAuthority
from settings import Settings
from staff.credentials import Session

log = logging.getLogger("accord.desk")
NAME = "desk"
TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")
TEMPLATES.env.filters["band"] = band_text
TEMPLATES.env.filters["when"] = lambda moment: (
    moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if moment else ""
)
FILTER_FIELDS = tuple(CaseFilter.model_fields)


class DeskError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class LoginRequest(BaseModel):
    staff_id: str
    password: str


def page_session(request: Request) -> Session:
    """The session cookie's (pages)."""
    auth: DeskAuth = request.app.state.auth
    return auth.from_cookie(request)


def api_session(request: Request) -> Session:
    """The bearer token's (the JSON API)."""
    auth: DeskAuth = request.app.state.auth
    return auth.from_bearer(request)


PageSession = Annotated[Session, Depends(page_session)]
ApiSession = Annotated[Session, Depends(api_session)]


def create_app(settings: Settings) -> FastAPI:
    auth = DeskAuth.from_settings(settings)
    client: Client | None = None
    connecting = asyncio.Lock()

    async def temporal() -> Client:
        nonlocal client
        async with connecting:
            if client is None:
                client = await calls.connect(settings)
            return client

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        oidc = None
        if settings.oidc.enabled:
            from desk.oidc import OidcLogin

            oidc = OidcLogin(settings, auth)
        app.state.oidc = oidc
        yield

    app = FastAPI(
        title="Accord desk",
        version="1.0.0",
        summary="Operations staff find, read and act on cases.",
        description=__doc__,
        lifespan=lifespan,
    )
    app.state.auth = auth

    # --- errors ------------------------------------------------------------------------------

    def is_api(request: Request) -> bool:
        return request.url.path.startswith("/api/")

    @app.exception_handler(NotSignedIn)
    async def _not_signed_in(request: Request, error: NotSignedIn) -> Any:
        if is_api(request):
            return api_error(401, "unauthorised", error.reason)
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if request.method != "GET":
            return page_error(request, None, 401, f"{error.reason}: sign in again")
        return RedirectResponse(f"/login?{urlencode({'next': target})}", status_code=303)

    @app.exception_handler(calls.CallError)
    async def _call_failed(request: Request, error: calls.CallError) -> Any:
        code = {403: "forbidden", 404: "not_found", 409: "refused", 422: "invalid"}.get(
            error.status, "unavailable"
        )
        if is_api(request):
            return api_error(error.status, code, error.message)
        return page_error(request, _maybe_session(request), error.status, error.message)

    @app.exception_handler(DeskError)
    async def _desk_error(request: Request, error: DeskError) -> Any:
        if is_api(request):
            return api_error(error.status, error.code, error.message)
        return page_error(request, _maybe_session(request), error.status, error.message)

    def api_error(status: int, code: str, message: str) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse(
            {"error": {"code": code, "message": message}}, status_code=status, headers=headers
        )

    def page_error(
        request: Request, session: Session | None, status: int, message: str
    ) -> HTMLResponse:
        return render(request, "error.html", session, status, message=message)

    def _maybe_session(request: Request) -> Session | None:
        try:
            return auth.from_cookie(request)
        except NotSignedIn:
            return None

    def render(
        request: Request,
        template: str,
        session: Session | None,
        status: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        return TEMPLATES.TemplateResponse(
            request,
            template,
            {
                "session": session,
                "queues": QUEUES,
                "authority": auth.authority(session.actor) if session else None,
                **context,
            },
            status_code=status,
        )

    # --- who is signed in --------------------------------------------------------------------

    def checked_form(session: Session, csrf: str | None) -> None:
        if not csrf_matches(session, csrf):
            raise DeskError(403, "forbidden", "the form is stale or forged (CSRF): reload the page")

    def set_session_cookie(response: Any, token: str) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=int(auth.session_lifetime.total_seconds()),
            httponly=True,
            secure=settings.desk.secure_cookies,
            samesite="strict",
            path="/",
        )

    # --- health and sign-in ------------------------------------------------------------------

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"service": NAME, "status": "ok"}

    @app.get("/login", response_class=HTMLResponse)
    async def login_page(request: Request, next: str = "/cases") -> HTMLResponse:
        secret = new_login_secret()
        response = render(
            request,
            "login.html",
            None,
            next=_local(next),
            login_secret=secret,
            oidc=request.app.state.oidc is not None,
        )
        response.set_cookie(
            LOGIN_COOKIE,
            secret,
            max_age=600,
            httponly=True,
            secure=settings.desk.secure_cookies,
            samesite="strict",
        )
        return response

    @app.post("/login", response_model=None)
    async def login(
        request: Request,
        staff_id: Annotated[str, Form()],
        password: Annotated[str, Form()],
        login_secret: Annotated[str, Form()],
        next: Annotated[str, Form()] = "/cases",
    ) -> Any:
        cookie = request.cookies.get(LOGIN_COOKIE)
        if cookie is None or not hmac.compare_digest(cookie, login_secret):
            raise DeskError(403, "forbidden", "the sign-in form is stale: reload the page")
        actor = await asyncio.to_thread(auth.accounts.authenticate, staff_id, password)
        if actor is None:
            log.info("sign-in refused")
            secret = new_login_secret()
            response = render(
                request,
                "login.html",
                None,
                401,
                next=_local(next),
                login_secret=secret,
                oidc=request.app.state.oidc is not None,
                message="wrong staff id or password",
            )
            response.set_cookie(
                LOGIN_COOKIE,
                secret,
                max_age=600,
                httponly=True,
                secure=settings.desk.secure_cookies,
                samesite="strict",
            )
            return response
        response = RedirectResponse(_local(next), status_code=303)
        set_session_cookie(response, auth.issue(actor, "password"))
        response.delete_cookie(LOGIN_COOKIE)
        return response

    @app.post("/logout")
    async def logout(session: PageSession, csrf: Annotated[str, Form()]) -> RedirectResponse:
        checked_form(session, csrf)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.get("/oidc/login")
    async def oidc_login(request: Request, next: str = "/cases") -> RedirectResponse:
        oidc = request.app.state.oidc
        if oidc is None:
            raise DeskError(404, "not_found", "OpenID Connect is not configured (ACCORD_OIDC__*)")
        return await oidc.start(_local(next), settings.desk.secure_cookies)

    @app.get("/oidc/callback")
    async def oidc_callback(request: Request) -> RedirectResponse:
        oidc = request.app.state.oidc
        if oidc is None:
            raise DeskError(404, "not_found", "OpenID Connect is not configured (ACCORD_OIDC__*)")
        actor, next_page = await oidc.finish(request)
        response = RedirectResponse(next_page, status_code=303)
        set_session_cookie(response, auth.issue(actor, "oidc"))
        return response

    # --- lists -------------------------------------------------------------------------------

    def filter_of(request: Request, session: Session) -> tuple[CaseFilter | None, str]:
        params = request.query_params
        queue_name = params.get("queue")
        if queue_name:
            queue = QUEUES.get(queue_name)
            if queue is None:
                raise DeskError(404, "not_found", f"no queue {queue_name!r}")
            built = queue.build(session.actor, auth.authority(session.actor), datetime.now(UTC))
            return built, queue.title
        values: dict[str, Any] = {}
        for name in FILTER_FIELDS:
            given = [value for value in params.getlist(name) if value != ""]
            if not given:
                continue
            if name == "assigned" and given[0] == "me":
                given = [session.actor.staff_id]
            values[name] = tuple(given) if name == "awaiting" else given[0]
        try:
            return CaseFilter.model_validate(values), "Cases"
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise DeskError(422, "invalid", f"filter {where}: {first['msg']}") from None

    async def listed(request: Request, session: Session) -> tuple[CaseList | None, str, str, bool]:
        case_filter, title = filter_of(request, session)
        sort = request.query_params.get("sort", "dpd")
        descending = request.query_params.get("order", "desc") != "asc"
        if sort not in SORT_KEYS:
            raise DeskError(422, "invalid", f"sort: one of {', '.join(SORT_KEYS)}")
        if case_filter is None:
            return None, title, sort, descending
        try:
            found = await list_cases(await temporal(), case_filter, settings.desk.list_limit)
        except calls.CallError:
            raise
        except Exception as error:  # an RPC error from visibility: say what and where
            raise _visibility_error(error) from None
        rows = sort_rows(found.rows, sort, descending)
        return CaseList(rows, found.query, found.truncated), title, sort, descending

    def _visibility_error(error: Exception) -> calls.CallError:
        from temporalio.service import RPCError, RPCStatusCode

        if isinstance(error, RPCError) and error.status is RPCStatusCode.UNAVAILABLE:
            return calls.unreachable(settings)
        return calls.CallError(502, f"visibility query failed: {error}")

    @app.get("/", include_in_schema=False)
    async def home() -> RedirectResponse:
        return RedirectResponse("/cases", status_code=303)

    @app.get("/cases", response_class=HTMLResponse)
    async def cases_page(request: Request, session: PageSession) -> HTMLResponse:
        found, title, sort, descending = await listed(request, session)
        params = [
            (k, v) for k, v in request.query_params.multi_items() if k not in ("sort", "order")
        ]
        return render(
            request,
            "cases.html",
            session,
            title=title,
            found=found,
            sort=sort,
            descending=descending,
            params=params,
            current=dict(request.query_params),
            stages=list(CaseStage),
            tiers=list(Tier),
            products=list(ProductType),
            checkpoints=list(CheckpointKind),
            authorities=[a for a in ApprovalAuthority if a is not ApprovalAuthority.AUTOMATIC],
            csv_link="/cases.csv" + (f"?{request.url.query}" if request.url.query else ""),
            temporal_ui=settings.temporal_ui_url,
            namespace=settings.temporal.namespace,
        )

    @app.get("/cases.csv")
    async def cases_csv(request: Request, session: PageSession) -> PlainTextResponse:
        found, _title, _sort, _descending = await listed(request, session)
        return csv_response(rows_csv(found.rows if found else []), "cases.csv")

    # --- one case ----------------------------------------------------------------------------

    async def case_context(case_id: str, session: Session) -> dict[str, Any]:
        client = await temporal()
        described = await calls.describe(client, settings, case_id)
        view = await calls.view(client, settings, case_id)
        audit = await calls.audit(client, settings, case_id)
        options = []
        if view.proposal is not None:
            for option in view.proposal.offered:
                options.append((option, schedule_of(option.terms)))
        authority = auth.authority(session.actor)
        pending = set(view.approval.option_ids) if view.approval else set()
        return {
            "view": view,
            "described": described,
            # Not "status": render() takes that as the HTTP status.
            "workflow_status": (
                described.status.name.title().replace("_", "") if described.status else ""
            ),
            "audit": audit,
            "events": timeline(audit),
            "options": options,
            "pending": pending,
            "can_approve": {
                o.option_id: o.required_authority.level <= authority.level
                for o, _schedule in options
            },
            "temporal_link": (
                f"{settings.temporal_ui_url}/namespaces/{settings.temporal.namespace}"
                f"/workflows/{case_id}"
            ),
        }

    @app.get("/cases/{case_id}", response_class=HTMLResponse)
    async def case_page(
        request: Request, case_id: str, session: PageSession, done: str | None = None
    ) -> HTMLResponse:
        context = await case_context(case_id, session)
        return render(request, "case.html", session, done=done, **context)

    @app.get("/cases/{case_id}/audit.csv")
    async def case_audit_csv(case_id: str, session: PageSession) -> PlainTextResponse:
        audit = await calls.audit(await temporal(), settings, case_id)
        return csv_response(audit_csv(audit), f"{case_id}-audit.csv")

    @app.post("/cases/{case_id}/act", response_model=None)
    async def act_from_page(request: Request, case_id: str, session: PageSession) -> Any:
        form = await request.form()
        checked_form(session, _text(form.get("csrf")))
        document = action_from_form(form)
        try:
            accepted = await perform(case_id, document, session)
        except calls.CallError as error:
            if error.status not in (403, 409, 422):
                raise
            context = await case_context(case_id, session)
            return render(
                request, "case.html", session, error.status, refused=error.message, **context
            )
        done = f"{document.get('action')}: {accepted.detail}"
        return RedirectResponse(f"/cases/{case_id}?{urlencode({'done': done})}", status_code=303)

    async def perform(case_id: str, document: dict[str, Any], session: Session) -> Any:
        action = calls.action_for(document, session.actor)
        signed = calls.sign_for(action, session.actor, case_id, auth.key, auth.credential_lifetime)
        accepted = await calls.act(await temporal(), settings, case_id, signed)
        log.info("%s by %s on %s: %s", action.action, session.actor.staff_id, case_id, "applied")
        return accepted

    # --- the JSON API (bearer tokens: `accord login`) ----------------------------------------

    @app.post("/api/login")
    async def api_login(request: LoginRequest) -> dict[str, str]:
        actor = await asyncio.to_thread(
            auth.accounts.authenticate, request.staff_id, request.password
        )
        if actor is None:
            raise DeskError(401, "unauthorised", "wrong staff id or password")
        token = auth.issue(actor, "cli")
        expires = auth.session(token).expires_at
        return {
            "token": token,
            "staff_id": actor.staff_id,
            "role": actor.role.value,
            "expires_at": expires.isoformat(),
        }

    @app.get("/api/me")
    async def api_me(session: ApiSession) -> dict[str, str]:
        return {
            "staff_id": session.actor.staff_id,
            "role": session.actor.role.value,
            "authority": auth.authority(session.actor).value,
            "expires_at": session.expires_at.isoformat(),
        }

    @app.get("/api/cases")
    async def api_cases(request: Request, session: ApiSession) -> dict[str, Any]:
        found, title, _sort, _descending = await listed(request, session)
        rows = found.rows if found else []
        return {
            "title": title,
            "query": found.query if found else None,
            "truncated": found.truncated if found else False,
            "cases": [row_record(row) for row in rows],
        }

    @app.get("/api/cases/{case_id}")
    async def api_case(case_id: str, session: ApiSession) -> JSONResponse:
        view = await calls.view(await temporal(), settings, case_id)
        return JSONResponse(view.model_dump(mode="json"))

    @app.get("/api/cases/{case_id}/audit")
    async def api_audit(case_id: str, session: ApiSession) -> JSONResponse:
        audit = await calls.audit(await temporal(), settings, case_id)
        return JSONResponse(audit.model_dump(mode="json"))

    @app.post("/api/cases/{case_id}/actions")
    async def api_act(
        case_id: str, session: ApiSession, document: Annotated[Any, Body()]
    ) -> dict[str, str]:
        accepted = await perform(case_id, document, session)
        return {"stage": accepted.stage.value, "detail": accepted.detail}

    return app


def csv_response(body: str, filename: str) -> PlainTextResponse:
    return PlainTextResponse(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _local(target: str) -> str:
    """Only a path on this site (never an open redirect)."""
    return target if target.startswith("/") and not target.startswith("//") else "/cases"


def action_from_form(form: Any) -> dict[str, Any]:
    """The action a page's form asks for, as the JSON document the API takes."""
    name = _text(form.get("action")) or ""
    values = {key: value for key, value in form.multi_items() if key not in ("csrf", "action")}
    document: dict[str, Any] = {"action": name}
    if name in ("approve", "reject"):
        document["option_ids"] = form.getlist("option_ids")
        if name == "reject" and values.get("reason"):
            document["reason"] = values["reason"]
    elif name == "pause":
        if values.get("until"):
            document["until"] = f"{values['until']}:00+00:00"
    elif name in ("resume", "retry"):
        if values.get("note"):
            document["note"] = values["note"]
    elif name == "resolve_dispute":
        document["upheld"] = values.get("verdict") == "upheld"
        document["note"] = values.get("note", "")
    elif name == "dispute":
        if values.get("reason"):
            document["reason"] = values["reason"]
    elif name == "assign":
        document["assignee"] = values.get("assignee") or None
    elif name == "note":
        document["text"] = values.get("text", "")
    elif name == "conversation":
        # Until the case has an action of its own for conversations, one is kept as a note.
        channel = values.get("channel", "phone")
        direction = values.get("direction", "inbound")
        document = {
            "action": "note",
            "text": f"Conversation ({channel}, {direction}): {values.get('summary', '')}".strip(),
        }
    elif name == "choose_option":
        document["option_id"] = values.get("option_id", "")
    elif name == "decline":
        if values.get("reason"):
            document["reason"] = values["reason"]
    return document
