"""HTTP calls of the simulated line: LOT creation and lookup on the central API (logged in), starts via a gateway."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({502, 503, 504})
RENEW_BEFORE_S = 60.0  # refresh the access token this long before it expires
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


class ApiUnavailable(Exception):
    """The login or refresh answered 502/503/504: retried like any other call."""


class LoginRefused(Exception):
    def __init__(self, reply: Reply) -> None:
        super().__init__(f"login refused: HTTP {reply.http_status} {reply.error_code}")
        self.reply = reply


class ApiLogin:
    """The simulator user's access token: log in, refresh before it expires, log in again when refused.

    Runs outlast the 15-minute access token and even the refresh token's session (a restart of the API with another
    key, a revoked session): a refused refresh falls back to a fresh login with the same credentials.
    """

    def __init__(self, http: httpx.AsyncClient, api_url: str, username: str, password: str) -> None:
        self._http, self._api_url = http, api_url
        self._username, self._password = username, password
        self._lock = asyncio.Lock()
        self._access: str | None = None
        self._refresh: str | None = None
        self._renew_at = 0.0

    async def headers(self, stale: str | None = None) -> dict[str, str]:
        """The Authorization header; `stale` is a token the API just refused (renewed unless someone did)."""
        async with self._lock:
            if self._access is None or self._access == stale or time.monotonic() >= self._renew_at:
                await self._renew()
            assert self._access is not None
            return {"Authorization": f"Bearer {self._access}"}

    async def _renew(self) -> None:
        if self._refresh is not None:
            refreshed = await self._post("refresh", {"refresh_token": self._refresh})
            if refreshed.ok:
                self._store(refreshed)
                return
            logger.info("refresh refused (HTTP %s %s): logging in again", refreshed.http_status, refreshed.error_code)
        self._access = self._refresh = None
        logged_in = await self._post("login", {"username": self._username, "password": self._password})
        if not logged_in.ok:
            raise LoginRefused(logged_in)
        self._store(logged_in)
        logger.info("logged in to %s as %s", self._api_url, self._username)

    async def _post(self, action: str, body: dict[str, str]) -> Reply:
        response = await self._http.post(f"{self._api_url}/api/v1/auth/{action}", json=body)
        if response.status_code in RETRY_STATUSES:
            raise ApiUnavailable(f"HTTP {response.status_code} on {action}")
        return Reply(response.status_code, _decode(response))

    def _store(self, reply: Reply) -> None:
        self._access = str(reply.data["access_token"])
        self._refresh = str(reply.data["refresh_token"])
        lifetime = float(reply.data.get("expires_in") or 900)
        self._renew_at = time.monotonic() + max(lifetime - RENEW_BEFORE_S, lifetime / 2)


class LineClient:
    """One pooled `httpx.AsyncClient`; 502/503/504 and unreachable hosts are retried until answered or cancelled.

    With `credentials` (user name, password) the central API calls carry the user's access token.
    """

    def __init__(
        self,
        api_url: str,
        on_retry: RetryHook | None = None,
        retry_base: float = 0.5,
        retry_max: float = 5.0,
        request_timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self._on_retry = on_retry
        self._retry_base = retry_base
        self._retry_max = retry_max
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(request_timeout, connect=5.0),
            headers={"Accept-Language": "ko"},
            transport=transport,
        )
        self._login = ApiLogin(self._http, self.api_url, *credentials) if credentials else None

    async def __aenter__(self) -> LineClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def create_lot(
        self, product_model: str, target_quantity: int, shift: str, printer_id: str | None = None
    ) -> Reply:
        body: dict[str, Any] = {"product_model": product_model, "target_quantity": target_quantity, "shift": shift}
        if printer_id is not None:
            body["printer_id"] = printer_id  # where the LOT label is printed (FR-LOT-002)
        return await self._call("POST", f"{self.api_url}/api/v1/lots", body, "LOT 생성", central=True)

    async def get_lot(self, lot_number: str) -> Reply:
        return await self._call("GET", f"{self.api_url}/api/v1/lots/{lot_number}", None, "LOT 조회", central=True)

    async def start(self, gateway_url: str, body: dict[str, Any]) -> Reply:
        """POST the start body to a station gateway; never gives up on 503/504 (server out of reach)."""
        what = f"{body.get('lot_number')} {body.get('process_id')} 착공"
        return await self._call("POST", f"{gateway_url.rstrip('/')}/start", body, what)

    async def _call(
        self, method: str, url: str, body: dict[str, Any] | None, what: str, central: bool = False
    ) -> Reply:
        attempt = 0
        stale: str | None = None  # an access token the API refused once: renewed, then the call is repeated once
        renewed = False
        while True:
            try:
                headers = await self._login.headers(stale) if central and self._login else None
                stale = None
                response = await self._http.request(method, url, json=body, headers=headers)
            except LoginRefused as refused:
                return refused.reply
            except (httpx.TransportError, ApiUnavailable) as error:
                reason = f"{type(error).__name__} {url}"
            else:
                if response.status_code == 401 and headers is not None and not renewed:
                    renewed, stale = True, headers["Authorization"].removeprefix("Bearer ")
                    continue
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
