"""What every embedded service shares: the error body, bearer auth, fault injection, SQLite
and serving with uvicorn."""

from __future__ import annotations

import asyncio
import hmac
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from starlette.exceptions import HTTPException as StarletteHTTPException

from schemas.http.errors import ErrorBody, ErrorDetail, is_retryable

log = logging.getLogger("accord.services")


class ServiceError(Exception):
    """Answered as ``ErrorBody`` with this status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    body = ErrorBody(error=ErrorDetail(code=code, message=message))
    extra = {"Retry-After": "1"} if status in (429, 503) else {}
    return JSONResponse(body.model_dump(), status_code=status, headers={**extra, **(headers or {})})


ERROR_DESCRIPTIONS = {
    400: "The request is malformed.",
    401: "Missing or wrong bearer token.",
    404: "No such resource.",
    409: "Conflicts with the current state, or the idempotency key was used for another request.",
    422: "The request body or parameters do not validate.",
    429: "Too many requests: retry after the delay in Retry-After.",
    500: "An unexpected error in the service: retry later.",
    503: "Unavailable (outage, dependency down, or not yet synchronised): retry later.",
}
COMMON_ERRORS = (400, 401, 422, 429, 500, 503)


def documented_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these statuses (and the ones every operation may answer), each
    marked ``x-retryable`` so a client knows which ones to try again."""
    return {
        status: {
            "model": ErrorBody,
            "description": ERROR_DESCRIPTIONS[status],
            "x-retryable": is_retryable(status),
        }
        for status in sorted({*statuses, *COMMON_ERRORS})
    }


async def reject_unknown_query(request: Request) -> None:
    """A query parameter the operation does not declare is refused, not silently ignored."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    declared = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        declared |= {param.alias for param in sub.query_params}
    unknown = sorted(set(request.query_params) - declared)
    if unknown:
        raise ServiceError(422, "invalid_request", f"unknown query parameter(s): {unknown}")
    repeated = sorted(k for k in declared if len(request.query_params.getlist(k)) > 1)
    if repeated:  # every parameter here is a single value
        raise ServiceError(422, "invalid_request", f"query parameter(s) given twice: {repeated}")


def install_error_handlers(app: FastAPI) -> None:
    """The one error body for every failure; undeclared query parameters refused. Call before
    adding routes."""
    app.router.dependencies.append(Depends(reject_unknown_query))

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, error: ServiceError) -> JSONResponse:
        return error_response(error.status, error.code, error.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return error_response(422, "invalid_request", f"{where}: {first.get('msg')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "error")
        headers = dict(error.headers or {})
        if error.status_code == 405:
            # Every method the path supports, not only the first route Starlette matched.
            methods: set[str] = set()
            for route in app.routes:
                pattern = getattr(route, "path_regex", None)
                if pattern is not None and pattern.match(request.url.path):
                    methods |= set(getattr(route, "methods", None) or ())
            headers["Allow"] = ", ".join(sorted(methods - {"HEAD"}))
        return error_response(error.status_code, code, str(error.detail), headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", type(error).__name__)


# --- auth -------------------------------------------------------------------------------------

_bearer = HTTPBearer(auto_error=False)


def bearer_auth(token: SecretStr | None) -> Callable[..., Awaitable[None]]:
    """A dependency that requires ``Authorization: Bearer <token>`` when a token is set."""

    async def check(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        if token is None:
            return
        offered = credentials.credentials if credentials is not None else ""
        if not hmac.compare_digest(offered.encode(), token.get_secret_value().encode()):
            raise ServiceError(401, "unauthorised", "missing or wrong bearer token")

    return check


# --- fault injection --------------------------------------------------------------------------


class FaultRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    operation: str | None = None
    """An operation id (e.g. ``read_loan``); None: every operation."""
    status: int = Field(default=503, ge=400, le=599)
    remaining: int | None = Field(default=None, ge=1)
    """Fail this many calls, then stop; None: until the plan is cleared."""
    after_effect: bool = False
    """Let the operation take effect, then answer the error (a response lost after commit)."""


class FaultPlan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outage: bool = False
    """Every operation (and /health) answers 503."""
    latency_seconds: float = Field(default=0.0, ge=0, le=300)
    errors: list[FaultRule] = Field(default_factory=list)


class Faults:
    """The service's current fault plan: in memory, so a restart clears it."""

    def __init__(self) -> None:
        self.plan = FaultPlan()

    def router(self, auth: Callable[..., Awaitable[None]]) -> APIRouter:
        router = APIRouter(prefix="/admin", dependencies=[Depends(auth)], include_in_schema=False)

        @router.get("/faults")
        async def current() -> FaultPlan:
            return self.plan

        @router.put("/faults")
        async def replace(plan: FaultPlan) -> FaultPlan:
            self.plan = plan
            log.warning("fault plan set: %s", plan.model_dump_json())
            return self.plan

        @router.delete("/faults")
        async def clear() -> FaultPlan:
            self.plan = FaultPlan()
            return self.plan

        return router

    def _take(self, operation: str, after_effect: bool) -> FaultRule | None:
        for rule in self.plan.errors:
            if rule.after_effect != after_effect or rule.operation not in (None, operation):
                continue
            if rule.remaining is not None:
                rule.remaining -= 1
                if rule.remaining == 0:
                    self.plan.errors.remove(rule)
            return rule
        return None

    async def before(self, operation: str) -> None:
        if self.plan.latency_seconds:
            await asyncio.sleep(self.plan.latency_seconds)
        if self.plan.outage:
            raise ServiceError(503, "outage", f"{operation}: service unavailable (outage)")
        rule = self._take(operation, after_effect=False)
        if rule is not None:
            raise ServiceError(rule.status, "injected_fault", f"{operation}: injected fault")

    def after(self, operation: str) -> None:
        """Called once the operation took effect."""
        rule = self._take(operation, after_effect=True)
        if rule is not None:
            raise ServiceError(
                rule.status, "injected_fault", f"{operation}: injected fault after the effect"
            )

    def guard(self, operation: str) -> Callable[[], Awaitable[None]]:
        async def check() -> None:
            await self.before(operation)

        return check


class Health(BaseModel):
    service: str
    status: str = "ok"


def add_health(app: FastAPI, name: str, faults: Faults) -> None:
    @app.get("/health", tags=["health"], operation_id="health", responses=documented_errors())
    async def health() -> Health:
        if faults.plan.outage:
            raise ServiceError(503, "outage", f"{name}: outage injected")
        return Health(service=name)


# --- storage ----------------------------------------------------------------------------------


def open_database(path: Path, schema: str) -> sqlite3.Connection:
    """SQLite in WAL mode with a full fsync per commit: an answer is only given once durable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.row_factory = sqlite3.Row
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("PRAGMA foreign_keys=ON")
    connection.executescript(schema)
    return connection


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


# --- serving ----------------------------------------------------------------------------------


async def serve(app: FastAPI, host: str, port: int, log_level: str = "info") -> None:
    """Run ``app`` until cancelled or signalled (uvicorn handles SIGTERM / SIGINT)."""
    config = uvicorn.Config(
        app, host=host, port=port, log_level=log_level.lower(), access_log=False, lifespan="on"
    )
    await uvicorn.Server(config).serve()
