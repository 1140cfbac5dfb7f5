"""One HTTP client for the external systems: timeouts, bearer token, mTLS, and every failure
turned into the two errors the case knows (``SystemUnavailable``: retry; ``PermanentRejection``:
retrying cannot help)."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from activities.faults import PermanentRejection, SystemUnavailable
from schemas.http.errors import ErrorBody, is_retryable
from settings import ServiceClientSettings

T = TypeVar("T")


def _tls(cfg: ServiceClientSettings) -> ssl.SSLContext | bool:
    if cfg.tls_ca_path is None and cfg.tls_client_cert_path is None:
        return True  # the system's trust store
    context = ssl.create_default_context(cafile=str(cfg.tls_ca_path) if cfg.tls_ca_path else None)
    if cfg.tls_client_cert_path is not None:
        context.load_cert_chain(
            str(cfg.tls_client_cert_path),
            str(cfg.tls_client_key_path) if cfg.tls_client_key_path else None,
        )
    return context


class ServiceClient:
    """Calls one external system; ``system`` names it in every error message."""

    def __init__(
        self,
        system: str,
        cfg: ServiceClientSettings,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"User-Agent": "accord"}
        if cfg.token is not None:
            headers["Authorization"] = f"Bearer {cfg.token.get_secret_value()}"
        self.system = system
        self.timeout = cfg.timeout_seconds
        self._client = httpx.AsyncClient(
            base_url=cfg.url.rstrip("/"),
            headers=headers,
            timeout=cfg.timeout_seconds,
            verify=_tls(cfg),
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def call(
        self,
        operation: str,
        method: str,
        path: str,
        answer: type[T] | TypeAdapter[T],
        *,
        body: BaseModel | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> T:
        try:
            response = await self._client.request(
                method,
                path,
                content=body.model_dump_json() if body is not None else None,
                params=params,
                headers={"Content-Type": "application/json", **(headers or {})},
            )
        except httpx.TimeoutException:
            raise SystemUnavailable(
                f"{operation}: {self.system} did not answer within {self.timeout:g}s"
            ) from None
        except httpx.HTTPError as error:
            raise SystemUnavailable(
                f"{operation}: {self.system} unreachable ({type(error).__name__})"
            ) from None
        if not response.is_success:
            raise self._error(operation, response)
        adapter = answer if isinstance(answer, TypeAdapter) else TypeAdapter(answer)
        try:
            return adapter.validate_json(response.content)
        except ValidationError as error:
            # A body outside the contract will not fix itself by asking again.
            raise PermanentRejection(
                f"{operation}: {self.system} answered outside its contract "
                f"({error.error_count()} error(s), first: {error.errors()[0]['msg']})"
            ) from None

    def _error(self, operation: str, response: httpx.Response) -> Exception:
        status = response.status_code
        try:
            detail = ErrorBody.model_validate_json(response.content).error
            reason = f"{detail.code}: {detail.message}"
        except ValidationError:
            reason = response.reason_phrase or "no error body"
        message = f"{operation}: {self.system} answered HTTP {status} ({reason})"
        if is_retryable(status):
            return SystemUnavailable(message)
        return PermanentRejection(message)
