"""HTTP calls of the simulated line: LOT creation and lookup on the central API, starts through a station gateway."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({502, 503, 504})
USER_HEADER = "line-simulator"
RetryHook = Callable[[str, str, int, float], None]


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer in the spec's `{"status", "message", "error_code"?, "data"}` shape."""

    http_status: int
    body: dict[str, Any]
    retries: int = 0

    @property
    def ok(self) -> bool:
        return 200 <= self.http_status < 300 and self.body.get("status") == "success"

    @property
    def error_code(self) -> str | None:
        code = self.body.get("error_code")
        return str(code) if code else None

    @property
    def message(self) -> str:
        return str(self.body.get("message") or "")

    @property
    def data(self) -> dict[str, Any]:
        data = self.body.get("data")
        return data if isinstance(data, dict) else {}


def _decode(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {"status": "error", "message": response.text[:200]}
    return body if isinstance(body, dict) else {"status": "error", "message": str(body)[:200]}


class LineClient:
    """One pooled `httpx.AsyncClient`; 502/503/504 and unreachable hosts are retried until answered or cancelled."""

    def __init__(
        self,
        api_url: str,
        on_retry: RetryHook | None = None,
        retry_base: float = 0.5,
        retry_max: float = 5.0,
        request_timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self._on_retry = on_retry
        self._retry_base = retry_base
        self._retry_max = retry_max
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(request_timeout, connect=5.0),
            headers={"X-MES-User": USER_HEADER, "Accept-Language": "ko"},
            transport=transport,
        )

    async def __aenter__(self) -> LineClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def create_lot(self, product_model: str, target_quantity: int, shift: str) -> Reply:
        body = {"product_model": product_model, "target_quantity": target_quantity, "shift": shift}
        return await self._call("POST", f"{self.api_url}/api/v1/lots", body, "LOT 생성")

    async def get_lot(self, lot_number: str) -> Reply:
        return await self._call("GET", f"{self.api_url}/api/v1/lots/{lot_number}", None, "LOT 조회")

    async def start(self, gateway_url: str, body: dict[str, Any]) -> Reply:
        """POST the start body to a station gateway; never gives up on 503/504 (server out of reach)."""
        what = f"{body.get('lot_number')} {body.get('process_id')} 착공"
        return await self._call("POST", f"{gateway_url.rstrip('/')}/start", body, what)

    async def _call(self, method: str, url: str, body: dict[str, Any] | None, what: str) -> Reply:
        attempt = 0
        while True:
            try:
                response = await self._http.request(method, url, json=body)
            except httpx.TransportError as error:
                reason = f"{type(error).__name__} {url}"
            else:
                if response.status_code not in RETRY_STATUSES:
                    return Reply(response.status_code, _decode(response), attempt)
                decoded = _decode(response)
                reason = f"HTTP {response.status_code} {decoded.get('error_code') or ''}".rstrip()
            attempt += 1
            delay = min(self._retry_max, self._retry_base * 2 ** min(attempt - 1, 6))
            logger.debug("%s: %s; retry %d in %.1f s", what, reason, attempt, delay)
            if self._on_retry is not None:
                self._on_retry(what, reason, attempt, delay)
            await asyncio.sleep(delay)
