"""The Digital River client (httpx is touched only here). [io]

One pooled `httpx.AsyncClient` per member: Bearer key, `DigitalRiver-Version` when configured,
an `upstream-id` per request (it only helps Digital River search its logs; it is not
deduplication), `x-dr-requestid` of every answer returned for logging. The client classifies
nothing: `outcomes.py` decides what an answer means. Transport failures are translated into
`TransportFailure` with a kind, because a connect failure (nothing sent) and a read timeout
(maybe applied) mean different things.
"""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import httpx

from consumer.config import Secret
from consumer.errors import ConfigurationError, RetryableFailure
from consumer.http11 import PooledHTTP11Transport

FailureKind: TypeAlias = Literal["connect", "timeout", "reset", "protocol"]


class TransportFailure(Exception):
    """No HTTP answer. `kind` says whether the request may have reached Digital River."""

    def __init__(self, kind: FailureKind, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


@dataclass(frozen=True, slots=True)
class DrResponse:
    status: int
    body: Mapping[str, Any] | None
    request_id: str | None
    retry_after: str | None
    upstream_id: str


class DigitalRiverClient:
    """Async client; `aclose()` releases the pool. Methods never raise httpx errors."""

    def __init__(
        self,
        base_url: str,
        api_key: Secret,
        *,
        api_version: str | None = None,
        timeout: float = 15.0,
        max_connections: int = 256,
        transport: httpx.AsyncBaseTransport | None = None,
        user_agent: str = "fulfillment-consumer",
    ) -> None:
        headers = {
            "Authorization": f"Bearer {api_key.reveal()}",
            "Accept": "application/json",
            "User-Agent": user_agent,  # names the member: which pod sent a request
        }
        if api_version:
            headers["DigitalRiver-Version"] = api_version
        # httpx's default transport (httpcore) costs ~3x the CPU per request of our lean
        # HTTP/1.1 pool (bench/transport_bench.py), and CPU is what limits a member.
        lean = PooledHTTP11Transport(
            max_connections=max_connections, ssl_context=ssl.create_default_context()
        )
        # Requests go straight to the transport: httpx's client layer (cookie jar, auth and
        # redirect wrappers, URL merging) cost as much CPU as the HTTP exchange itself and
        # gives Digital River calls nothing (no cookies, no redirects, a fixed Bearer key).
        self._transport: httpx.AsyncBaseTransport = transport or lean
        self._base = base_url.rstrip("/")
        self._headers = headers
        timeouts = httpx.Timeout(timeout, connect=min(timeout, 5.0))
        self._extensions = {"timeout": timeouts.as_dict()}
        self._post_url = httpx.URL(self._base + "/fulfillments")

    async def create_fulfillment(self, body: Mapping[str, object]) -> DrResponse:
        """POST /fulfillments. An HTTP status is a DrResponse; no answer raises TransportFailure."""
        return await self._send("POST", self._post_url, json=body)

    async def list_fulfillments(self, order_id: str) -> list[dict[str, Any]]:
        """Every fulfillment of an order (newest first), following `hasMore` pages.

        Raises RetryableFailure when Digital River cannot answer now, ConfigurationError on 401/403.
        """
        found: list[dict[str, Any]] = []
        params: dict[str, str | int] = {"orderId": order_id, "limit": 100}
        while True:
            resp = await self._read("/fulfillments", params)
            page = resp.body or {}
            data = page.get("data") or []
            found.extend(data)
            if not page.get("hasMore") or not data:
                return found
            params["startingAfter"] = str(data[-1]["id"])

    async def list_fulfillments_page(self, params: Mapping[str, str | int]) -> dict[str, Any]:
        """One page of GET /fulfillments with `params` as given (filters, limit, cursor).

        Raises RetryableFailure when Digital River cannot answer now, ConfigurationError on 401/403.
        """
        resp = await self._read("/fulfillments", params)
        return dict(resp.body or {})

    async def get_order(self, order_id: str) -> dict[str, Any]:
        resp = await self._read(f"/orders/{order_id}", None)
        return dict(resp.body or {})

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def _read(self, path: str, params: Mapping[str, str | int] | None) -> DrResponse:
        try:
            resp = await self._send("GET", path, params=params)
        except TransportFailure as exc:
            raise RetryableFailure(f"GET {path}: {exc}") from exc
        if resp.status in (401, 403):
            raise ConfigurationError(
                f"Digital River refused the key ({resp.status})", setting="DR_API_KEY"
            )
        if resp.status != 200:
            header = resp.retry_after or ""
            retry_after = float(header) if header.isdigit() else None
            raise RetryableFailure(
                f"GET {path} answered {resp.status}", retry_after=retry_after, status=resp.status
            )
        return resp

    async def _send(
        self,
        method: str,
        url: httpx.URL | str,
        *,
        params: Mapping[str, str | int] | None = None,
        json: Mapping[str, object] | None = None,
    ) -> DrResponse:
        upstream_id = str(uuid.uuid4())
        if isinstance(url, str):
            url = httpx.URL(self._base + url, params=params)
        request = httpx.Request(
            method,
            url,
            headers={**self._headers, "upstream-id": upstream_id},
            json=json,
            extensions=self._extensions,
        )
        try:
            resp = await self._transport.handle_async_request(request)
            await resp.aread()
            await resp.aclose()
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise TransportFailure("connect", type(exc).__name__) from exc
        except httpx.TimeoutException as exc:
            raise TransportFailure("timeout", type(exc).__name__) from exc
        except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError) as exc:
            raise TransportFailure("reset", type(exc).__name__) from exc
        except httpx.HTTPError as exc:
            raise TransportFailure("protocol", type(exc).__name__) from exc
        return DrResponse(
            status=resp.status_code,
            body=_json_or_none(resp),
            request_id=resp.headers.get("x-dr-requestid"),
            retry_after=resp.headers.get("retry-after"),
            upstream_id=upstream_id,
        )


def _json_or_none(resp: httpx.Response) -> Mapping[str, Any] | None:
    try:
        body = resp.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None
