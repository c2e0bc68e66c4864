"""DigitalRiverClient against the sandbox mounted in-process (and a loopback one for timeouts).

There is no async pytest plugin: each test runs its scenario with `asyncio.run`.
"""

from __future__ import annotations

import asyncio
import socket
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest

from consumer.config.settings import Secret
from consumer.core.errors import (
    ConfigurationError,
    FailureKind,
    RetryableFailure,
    TransportFailure,
)
from consumer.digitalriver.client import DigitalRiverClient
from consumer.sandbox.app import create_app
from consumer.sandbox.config import FaultSettings, SandboxConfig
from consumer.sandbox.server import SandboxServer
from consumer.sandbox.testing import sandbox_client

KEY = "sk_test_Dr7ClientDistinctiveKey913"
KEY_TAIL = "Dr7ClientDistinctiveKey913"
BASE_URL = "http://sandbox.test"
ONE_PER_SECOND = SandboxConfig(faults=FaultSettings(rate_limit=1))


def frozen_clock() -> float:
    """The sandbox's clock for rate-limit tests: no token comes back while a test runs."""
    return 1000.0


def body(order_id: str, item_id: str = "itm_1", quantity: int = 1) -> dict[str, object]:
    return {"orderId": order_id, "items": [{"itemId": item_id, "quantity": quantity}]}


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


class RecordingTransport(httpx2.AsyncBaseTransport):
    """Passes every request on to `inner` and keeps it, so tests can read the headers sent."""

    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self.inner = inner
        self.requests: list[httpx2.Request] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass
class Sandboxed:
    client: DigitalRiverClient
    sent: list[httpx2.Request]
    admin: httpx2.AsyncClient

    async def received(self) -> list[dict[str, Any]]:
        """The sandbox's request log (`/_admin/requests`), in arrival order."""
        response = await self.admin.get("/_admin/requests")
        records: list[dict[str, Any]] = response.json()["requests"]
        return records

    async def set_faults(self, **faults: object) -> None:
        response = await self.admin.put("/_admin/faults", json=faults)
        assert response.status_code == 200, response.text


@asynccontextmanager
async def sandboxed(
    config: SandboxConfig | None = None,
    *,
    key: str = KEY,
    api_version: str | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[Sandboxed]:
    """A client on a fresh in-process sandbox, recording what it sends, plus an admin client."""
    app = create_app(config or SandboxConfig(), clock=clock)
    recorder = RecordingTransport(httpx2.ASGITransport(app=app))
    client = DigitalRiverClient(BASE_URL, Secret(key), api_version=api_version, transport=recorder)
    async with sandbox_client(app) as admin:
        try:
            yield Sandboxed(client, recorder.requests, admin)
        finally:
            await client.aclose()


def mocked(handler: Callable[[httpx2.Request], httpx2.Response]) -> DigitalRiverClient:
    return DigitalRiverClient(BASE_URL, Secret(KEY), transport=httpx2.MockTransport(handler))


def closed_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def full_text(error: BaseException) -> str:
    """Message, repr and the whole chained traceback: everything a log line could show."""
    return "\n".join([str(error), repr(error), *traceback.format_exception(error)])


# --- what a create answers ---------------------------------------------------------------------


def test_create_fulfillment_returns_201_with_the_fulfillment_and_its_request_id() -> None:
    async def scenario() -> None:
        async with sandboxed() as sb:
            answer = await sb.client.create_fulfillment(body("ord_1", quantity=2))
            assert answer.status == 201
            assert answer.body is not None
            assert str(answer.body["id"]).startswith("ful_")
            assert answer.body["orderId"] == "ord_1"
            assert answer.body["items"][0]["quantity"] == 2
            assert answer.body["liveMode"] is False
            assert answer.request_id

    run(scenario)


def test_create_fulfillment_returns_an_error_answer_instead_of_raising() -> None:
    async def scenario() -> None:
        async with sandboxed() as sb:
            answer = await sb.client.create_fulfillment({"orderId": "ord_1", "items": []})
            assert answer.status == 400
            assert answer.body is not None
            assert answer.body["type"] == "bad_request"
            assert answer.request_id

    run(scenario)


def test_create_fulfillment_returns_a_429_with_its_retry_after() -> None:
    async def scenario() -> None:
        async with sandboxed(ONE_PER_SECOND, clock=frozen_clock) as sb:
            first = await sb.client.create_fulfillment(body("ord_1"))
            limited = await sb.client.create_fulfillment(body("ord_1"))
            assert (first.status, limited.status) == (201, 429)
            assert limited.retry_after is not None
            assert int(limited.retry_after) >= 1

    run(scenario)


def test_the_request_id_of_an_answer_is_the_one_digital_river_logged() -> None:
    async def scenario() -> None:
        async with sandboxed() as sb:
            answer = await sb.client.create_fulfillment(body("ord_1"))
            (received,) = await sb.received()
            assert received["upstreamId"] == answer.upstream_id
            assert answer.request_id is not None
            uuid.UUID(answer.request_id)

    run(scenario)


# --- the headers every request carries ---------------------------------------------------------


def test_every_request_carries_the_bearer_key_and_asks_for_json() -> None:
    async def scenario() -> None:
        async with sandboxed() as sb:
            await sb.client.create_fulfillment(body("ord_1"))
            await sb.client.list_fulfillments("ord_1")
            await sb.client.get_order("ord_1")
            assert len(sb.sent) == 3
            for request in sb.sent:
                assert request.headers["authorization"] == f"Bearer {KEY}"
                assert request.headers["accept"] == "application/json"
            assert sb.sent[0].headers["content-type"] == "application/json"

    run(scenario)


def test_the_version_header_is_sent_when_a_version_is_configured() -> None:
    async def scenario() -> None:
        async with sandboxed(api_version="2021-12-13") as sb:
            await sb.client.create_fulfillment(body("ord_1"))
            await sb.client.list_fulfillments("ord_1")
            assert [r.headers.get("digitalriver-version") for r in sb.sent] == ["2021-12-13"] * 2

    run(scenario)


def test_no_version_header_is_sent_when_none_is_configured() -> None:
    async def scenario() -> None:
        async with sandboxed(api_version=None) as sb:
            await sb.client.create_fulfillment(body("ord_1"))
            assert "digitalriver-version" not in sb.sent[0].headers

    run(scenario)


def test_every_request_gets_a_fresh_upstream_id_that_reaches_digital_river() -> None:
    async def scenario() -> None:
        async with sandboxed() as sb:
            first = await sb.client.create_fulfillment(body("ord_1"))
            second = await sb.client.create_fulfillment(body("ord_1"))
            await sb.client.list_fulfillments("ord_1")
            await sb.client.get_order("ord_1")
            sent = [request.headers["upstream-id"] for request in sb.sent]
            assert len(set(sent)) == 4, "one fresh id per request"
            for value in sent:
                uuid.UUID(value)
            assert [first.upstream_id, second.upstream_id] == sent[:2]
            assert [record["upstreamId"] for record in await sb.received()] == sent

    run(scenario)


def test_a_retried_create_gets_a_new_upstream_id() -> None:
    async def scenario() -> None:
        async with sandboxed() as sb:
            await sb.set_faults(errorRate=1.0, errorStatus=503)
            failed = await sb.client.create_fulfillment(body("ord_1"))
            await sb.set_faults(errorRate=0.0)
            retried = await sb.client.create_fulfillment(body("ord_1"))
            assert (failed.status, retried.status) == (503, 201)
            assert failed.upstream_id != retried.upstream_id

    run(scenario)


# --- reading: list and get ---------------------------------------------------------------------


def test_list_fulfillments_follows_every_page_and_returns_all_newest_first() -> None:
    async def scenario() -> None:
        async with sandboxed() as sb:
            created = []
            for _ in range(205):
                answer = await sb.client.create_fulfillment(body("ord_paged"))
                assert answer.status == 201
                assert answer.body is not None
                created.append(answer.body["id"])
            await sb.client.create_fulfillment(body("ord_other"))

            listed = await sb.client.list_fulfillments("ord_paged")

            assert [f["id"] for f in listed] == created[::-1]
            pages = [r for r in await sb.received() if r["method"] == "GET"]
            assert len(pages) == 3, "100 + 100 + 5"

    run(scenario)


def test_list_fulfillments_of_an_order_with_exactly_one_full_page_stops_after_it() -> None:
    async def scenario() -> None:
        async with sandboxed() as sb:
            for _ in range(100):
                await sb.client.create_fulfillment(body("ord_100"))
            assert len(await sb.client.list_fulfillments("ord_100")) == 100
            assert len([r for r in await sb.received() if r["method"] == "GET"]) == 1

    run(scenario)


def test_list_fulfillments_asks_for_full_pages_of_one_order() -> None:
    async def scenario() -> None:
        async with sandboxed() as sb:
            await sb.client.list_fulfillments("ord_1")
            params = sb.sent[0].url.params
            assert (params["orderId"], params["limit"]) == ("ord_1", "100")

    run(scenario)


def test_list_fulfillments_of_an_order_without_any_is_empty() -> None:
    async def scenario() -> None:
        async with sandboxed() as sb:
            assert await sb.client.list_fulfillments("ord_unknown") == []

    run(scenario)


def test_get_order_returns_the_orders_state_and_lines() -> None:
    async def scenario() -> None:
        async with sandboxed() as sb:
            await sb.client.create_fulfillment(body("ord_1", item_id="itm_9"))
            order = await sb.client.get_order("ord_1")
            assert order["id"] == "ord_1"
            assert order["state"] == "accepted"
            assert [item["id"] for item in order["items"]] == ["itm_9"]

    run(scenario)


@pytest.mark.parametrize(
    "config",
    [SandboxConfig(api_keys=("sk_test_another",)), SandboxConfig(forbidden_keys=(KEY,))],
    ids=["401", "403"],
)
def test_a_refused_key_on_a_read_is_a_configuration_error_naming_dr_api_key(
    config: SandboxConfig,
) -> None:
    async def scenario() -> None:
        async with sandboxed(config) as sb:
            with pytest.raises(ConfigurationError) as caught:
                await sb.client.list_fulfillments("ord_1")
            assert caught.value.setting == "DR_API_KEY"
            assert "DR_API_KEY" in str(caught.value)
            assert KEY_TAIL not in full_text(caught.value)
            with pytest.raises(ConfigurationError, match="DR_API_KEY"):
                await sb.client.get_order("ord_1")

    run(scenario)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_server_error_on_a_read_is_retryable_with_its_status(status: int) -> None:
    async def scenario() -> None:
        async with sandboxed() as sb:
            await sb.set_faults(errorRate=1.0, errorStatus=status)
            with pytest.raises(RetryableFailure) as caught:
                await sb.client.list_fulfillments("ord_1")
            assert caught.value.status == status
            with pytest.raises(RetryableFailure):
                await sb.client.get_order("ord_1")

    run(scenario)


def test_a_429_on_a_read_is_retryable_after_retry_after() -> None:
    async def scenario() -> None:
        async with sandboxed(ONE_PER_SECOND, clock=frozen_clock) as sb:
            await sb.client.list_fulfillments("ord_1")  # spends the one token of this second
            with pytest.raises(RetryableFailure) as caught:
                await sb.client.list_fulfillments("ord_1")
            assert caught.value.status == 429
            assert caught.value.retry_after is not None
            assert caught.value.retry_after >= 1

    run(scenario)


def test_a_read_that_fails_in_transport_is_retryable_and_keeps_the_kind() -> None:
    async def scenario() -> None:
        client = DigitalRiverClient(f"http://127.0.0.1:{closed_loopback_port()}", Secret(KEY))
        try:
            with pytest.raises(RetryableFailure) as caught:
                await client.list_fulfillments("ord_1")
        finally:
            await client.aclose()
        cause = caught.value.__cause__
        assert isinstance(cause, TransportFailure)
        assert cause.kind == "connect"

    run(scenario)


# --- transport failures and their kinds --------------------------------------------------------


def test_a_refused_connection_is_a_connect_failure() -> None:
    async def scenario() -> None:
        client = DigitalRiverClient(f"http://127.0.0.1:{closed_loopback_port()}", Secret(KEY))
        try:
            with pytest.raises(TransportFailure) as caught:
                await client.create_fulfillment(body("ord_1"))
        finally:
            await client.aclose()
        assert caught.value.kind == "connect"
        assert KEY_TAIL not in full_text(caught.value)

    run(scenario)


def test_a_sandbox_that_holds_the_request_past_the_client_timeout_is_a_timeout_failure() -> None:
    faults = FaultSettings(timeout_rate=1.0, timeout_hold_s=30.0)
    with SandboxServer(SandboxConfig(faults=faults)) as sandbox:

        async def scenario() -> None:
            client = DigitalRiverClient(sandbox.url, Secret(KEY), timeout=0.3)
            try:
                with pytest.raises(TransportFailure) as caught:
                    await client.create_fulfillment(body("ord_1"))
            finally:
                await client.aclose()
            assert caught.value.kind == "timeout"
            assert KEY_TAIL not in full_text(caught.value)

        run(scenario)


def raising(error: type[httpx2.TransportError]) -> Callable[[httpx2.Request], httpx2.Response]:
    def handler(request: httpx2.Request) -> httpx2.Response:
        raise error("simulated", request=request)

    return handler


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (httpx2.ConnectError, "connect"),
        (httpx2.ConnectTimeout, "connect"),
        (httpx2.PoolTimeout, "connect"),
        (httpx2.ReadTimeout, "timeout"),
        (httpx2.WriteTimeout, "timeout"),
        (httpx2.RemoteProtocolError, "reset"),
        (httpx2.ReadError, "reset"),
        (httpx2.WriteError, "reset"),
        (httpx2.LocalProtocolError, "protocol"),
    ],
)
def test_each_transport_error_maps_to_its_failure_kind(
    error: type[httpx2.TransportError], kind: FailureKind
) -> None:
    async def scenario() -> None:
        client = mocked(raising(error))
        try:
            with pytest.raises(TransportFailure) as caught:
                await client.create_fulfillment(body("ord_1"))
        finally:
            await client.aclose()
        assert caught.value.kind == kind
        assert isinstance(caught.value.__cause__, error)
        assert KEY_TAIL not in full_text(caught.value)

    run(scenario)


def test_an_answer_that_is_not_json_comes_back_without_a_body() -> None:
    async def scenario() -> None:
        client = mocked(lambda request: httpx2.Response(502, text="<html>bad gateway</html>"))
        try:
            answer = await client.create_fulfillment(body("ord_1"))
        finally:
            await client.aclose()
        assert (answer.status, answer.body) == (502, None)

    run(scenario)


def test_the_key_never_appears_in_a_read_failure() -> None:
    async def scenario() -> None:
        client = mocked(raising(httpx2.RemoteProtocolError))
        try:
            with pytest.raises(RetryableFailure) as caught:
                await client.list_fulfillments("ord_1")
        finally:
            await client.aclose()
        assert KEY_TAIL not in full_text(caught.value)

    run(scenario)
