"""The Digital River client (httpx2 is touched only here). [io]

One `httpx2.AsyncClient` per member: Bearer key, `DigitalRiver-Version` when configured,
an `upstream-id` per request (it only helps Digital River search its logs; it is not
deduplication), `x-dr-requestid` of every answer returned for logging. A POST's answer is
returned as it came: `outcomes.py` decides what it means. A read that got no listing raises
(`RetryableFailure` with the status, the error code and `Retry-After`, read with outcomes.py's
parsers; `ConfigurationError` on 401/403). Transport failures are translated into
`TransportFailure` with a kind, because a connect failure (nothing sent) and a read timeout
(maybe applied) mean different things.

httpx2 owns the HTTP: the pool, proxies from the environment (`HTTPS_PROXY`, `HTTP_PROXY`,
`ALL_PROXY`, `NO_PROXY`) and TLS (`DR_CA_BUNDLE`, else `SSL_CERT_FILE`/`SSL_CERT_DIR`, else the
system's CAs). CPU is what limits a member, so each request is built ready to send (headers
prepared once, the timeout set) and handed to `AsyncClient.send`, which skips the URL, header
and cookie merging of `AsyncClient.request`.
"""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx2

from consumer.config.settings import Secret
from consumer.core.errors import ConfigurationError, RetryableFailure, TransportFailure
from consumer.core.outcomes import ErrorBody, parse_retry_after


@dataclass(frozen=True, slots=True)
class DrResponse:
    status: int
    body: Mapping[str, Any] | None
    request_id: str | None
    retry_after: str | None
    upstream_id: str


class DigitalRiverClient:
    """Async client; `aclose()` releases the pool. Methods never raise httpx2 errors.

    `max_connections` caps the pool (connections open only when needed and are kept alive up to
    the cap, so a steady load reuses them; httpx2's pool looks at every open connection twice per
    request, so the cap also bounds the CPU a request costs); `ca_bundle` is a PEM file of the
    CAs to trust instead of the system's; `transport` replaces the network (tests), and with it
    the proxy settings.
    """

    def __init__(
        self,
        base_url: str,
        api_key: Secret,
        *,
        api_version: str | None = None,
        timeout: float = 15.0,
        max_connections: int = 64,
        ca_bundle: str | None = None,
        transport: httpx2.AsyncBaseTransport | None = None,
        user_agent: str = "fulfillment-consumer",
    ) -> None:
        headers = {
            "Authorization": f"Bearer {api_key.reveal()}",
            "Accept": "application/json",
            "User-Agent": user_agent,  # names the member: which pod sent a request
        }
        if api_version:
            headers["DigitalRiver-Version"] = api_version
        self._base = base_url.rstrip("/")
        self._headers = headers
        timeouts = httpx2.Timeout(timeout, connect=min(timeout, 5.0))
        self._extensions = {"timeout": timeouts.as_dict()}
        self._post_url = httpx2.URL(self._base + "/fulfillments")
        # Every connection the pool opens stays alive for reuse: a smaller keep-alive cap than
        # the pool would close and reopen connections under a steady load.
        limits = httpx2.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        self._client = httpx2.AsyncClient(
            verify=_tls_context(ca_bundle) if ca_bundle else True,
            limits=limits,
            timeout=timeouts,
            transport=transport,
            trust_env=True,  # HTTPS_PROXY/NO_PROXY and SSL_CERT_FILE, as operators expect
        )

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
            resp = await self._read("/fulfillments", params, order_id=order_id)
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
        await self._client.aclose()

    async def _read(
        self, path: str, params: Mapping[str, str | int] | None, *, order_id: str | None = None
    ) -> DrResponse:
        try:
            resp = await self._send("GET", path, params=params)
        except TransportFailure as exc:
            raise RetryableFailure(f"GET {path}: {exc}", order_id=order_id) from exc
        if resp.status in (401, 403):
            raise ConfigurationError(
                f"Digital River refused the key ({resp.status})",
                setting="DR_API_KEY",
                status=resp.status,
            )
        if resp.status != 200:
            raise RetryableFailure(
                f"GET {path} answered {resp.status}",
                retry_after=parse_retry_after(resp.retry_after),
                status=resp.status,
                code=ErrorBody.of(resp.body).code,
                order_id=order_id,
            )
        return resp

    async def _send(
        self,
        method: str,
        url: httpx2.URL | str,
        *,
        params: Mapping[str, str | int] | None = None,
        json: Mapping[str, object] | None = None,
    ) -> DrResponse:
        upstream_id = str(uuid.uuid4())
        if isinstance(url, str):
            url = httpx2.URL(self._base + url, params=params)
        request = httpx2.Request(
            method,
            url,
            headers={**self._headers, "upstream-id": upstream_id},
            json=json,
            extensions=self._extensions,
        )
        try:
            resp = await self._client.send(request)
        except (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout) as exc:
            raise TransportFailure("connect", type(exc).__name__) from exc
        except httpx2.ProxyError as exc:  # the proxy refused or failed the tunnel: nothing sent
            raise TransportFailure("connect", type(exc).__name__) from exc
        except httpx2.TimeoutException as exc:
            raise TransportFailure("timeout", type(exc).__name__) from exc
        except (httpx2.ReadError, httpx2.WriteError, httpx2.RemoteProtocolError) as exc:
            raise TransportFailure("reset", type(exc).__name__) from exc
        except httpx2.HTTPError as exc:
            raise TransportFailure("protocol", type(exc).__name__) from exc
        return DrResponse(
            status=resp.status_code,
            body=_json_or_none(resp),
            request_id=resp.headers.get("x-dr-requestid"),
            retry_after=resp.headers.get("retry-after"),
            upstream_id=upstream_id,
        )


def _tls_context(ca_bundle: str) -> ssl.SSLContext:
    """Verify Digital River (and a TLS proxy) against the CAs in `ca_bundle` only."""
    try:
        return ssl.create_default_context(cafile=ca_bundle)
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigurationError(
            f"cannot load the CA bundle {ca_bundle!r} ({reason})", setting="DR_CA_BUNDLE"
        ) from None


def _json_or_none(resp: httpx2.Response) -> Mapping[str, Any] | None:
    try:
        body = resp.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None
