"""A process's own health endpoint (``GET /health``), for processes that are not web services
(the worker): the stack's probe asks the process itself, not a registry of pollers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from services.common import serve

HealthCheck = Callable[[], Awaitable[str | None]]
"""Returns None when healthy, else the reason it is not."""


def health_app(name: str, check: HealthCheck) -> FastAPI:
    app = FastAPI(title=f"{name} health", openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/health")
    async def health() -> JSONResponse:
        try:
            problem = await check()
        except Exception as error:  # a broken check is an unhealthy answer, not a crash
            problem = f"{type(error).__name__}: {error}"
        if problem is not None:
            return JSONResponse({"service": name, "status": "unhealthy", "reason": problem}, 503)
        return JSONResponse({"service": name, "status": "ok"})

    return app


@contextlib.asynccontextmanager
async def health_endpoint(
    name: str, host: str, port: int, check: HealthCheck
) -> AsyncIterator[None]:
    """Serve ``/health`` on host:port for as long as the block runs."""
    server = asyncio.create_task(serve(health_app(name, check), host, port, "warning"))
    try:
        yield
    finally:
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)
