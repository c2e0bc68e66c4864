"""Injected trouble: rate limit, latency, errors, timeouts and apply-then-fail; never on /_admin."""

from __future__ import annotations

import time
from typing import Any

import httpx2
import pytest

from consumer.sandbox import FaultSettings, SandboxConfig, create_app
from consumer.sandbox.faults import RateLimiter
from consumer.sandbox.testing import sandbox_client

pytestmark = pytest.mark.anyio


class FakeClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def ship(order_id: str = "ord_1", quantity: int = 1) -> dict[str, Any]:
    return {"orderId": order_id, "items": [{"itemId": "itm_a", "quantity": quantity}]}


def with_faults(clock: FakeClock | None = None, **faults: Any) -> httpx2.AsyncClient:
    config = SandboxConfig(faults=FaultSettings(**faults))
    app = create_app(config, clock=clock) if clock else create_app(config)
    return sandbox_client(app)


async def captured(client: httpx2.AsyncClient, order_id: str = "ord_1") -> int:
    orders = (await client.get("/_admin/ledger")).json()["orders"]
    if order_id not in orders:
        return 0
    total: int = orders[order_id]["lines"]["itm_a"]["captured"]
    return total


async def test_over_the_rate_limit_answers_429_with_retry_after_and_applies_nothing() -> None:
    clock = FakeClock()
    async with with_faults(clock, rate_limit=2) as client:
        answers = [await client.post("/fulfillments", json=ship()) for _ in range(3)]
        stats = (await client.get("/_admin/stats")).json()
        assert await captured(client) == 2
    assert [a.status_code for a in answers] == [201, 201, 429]
    refused = answers[2]
    assert refused.json()["type"] == "too_many_requests"
    assert refused.json()["errors"][0]["code"] == "too_many_requests"
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["x-dr-requestid"]
    assert stats["rateLimited"] == 1


async def test_the_rate_limit_refills_with_time_and_is_kept_per_key() -> None:
    clock = FakeClock()
    async with with_faults(clock, rate_limit=1) as client:
        first = await client.post("/fulfillments", json=ship())
        refused = await client.post("/fulfillments", json=ship())
        other_key = await client.post(
            "/fulfillments", json=ship(), headers={"Authorization": "Bearer sk_test_other"}
        )
        clock.now += 1.0
        refilled = await client.post("/fulfillments", json=ship())
    statuses = [r.status_code for r in (first, refused, other_key, refilled)]
    assert statuses == [201, 429, 201, 201]


def test_retry_after_is_the_whole_seconds_until_a_token_is_back() -> None:
    limiter = RateLimiter(0.25)  # one request every 4 s
    assert limiter.admit("k", now=0.0) == 0
    assert limiter.admit("k", now=0.5) == 4  # 0.875 of a token missing at 0.25/s: 3.5 s -> 4
    assert limiter.admit("k", now=4.0) == 0
    fast = RateLimiter(100)
    assert all(fast.admit("k", now=0.0) == 0 for _ in range(100))
    assert fast.admit("k", now=0.0) == 1, "never less than one second"


async def test_the_rate_limit_can_be_set_at_runtime_and_never_limits_admin() -> None:
    clock = FakeClock()
    async with with_faults(clock) as client:
        put = await client.put("/_admin/faults", json={"rateLimit": 1})
        assert (await client.post("/fulfillments", json=ship())).status_code == 201
        assert (await client.post("/fulfillments", json=ship())).status_code == 429
        admin = [await client.get("/_admin/stats") for _ in range(5)]
    assert put.json()["rateLimit"] == 1
    assert all(a.status_code == 200 for a in admin)


async def test_latency_delays_every_api_request_but_not_admin() -> None:
    async with with_faults(latency_ms=60) as client:
        started = time.perf_counter()
        await client.get("/orders/ord_x")
        api_elapsed = time.perf_counter() - started
        started = time.perf_counter()
        await client.get("/_admin/stats")
        admin_elapsed = time.perf_counter() - started
        stats = (await client.get("/_admin/stats")).json()
    assert api_elapsed >= 0.06
    assert admin_elapsed < 0.05
    assert stats["faultsInjected"]["latency"] == 1


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
async def test_an_injected_error_answers_the_configured_status_and_applies_nothing(
    status: int,
) -> None:
    async with with_faults(error_rate=1.0, error_status=status) as client:
        response = await client.post("/fulfillments", json=ship())
        stats = (await client.get("/_admin/stats")).json()
        assert await captured(client) == 0
    assert response.status_code == status
    assert response.json()["errors"][0]["code"]
    assert stats["faultsInjected"]["error"] == 1


async def test_a_timeout_holds_the_request_then_answers_504_without_applying() -> None:
    async with with_faults(timeout_rate=1.0, timeout_hold_s=0.05) as client:
        started = time.perf_counter()
        response = await client.post("/fulfillments", json=ship())
        held = time.perf_counter() - started
        requests = (await client.get("/_admin/requests")).json()["requests"]
        assert await captured(client) == 0
    assert held >= 0.05
    assert response.status_code == 504
    assert response.json()["type"] == "gateway_timeout"
    assert requests[0]["fault"] == "timeout"


async def test_apply_then_fail_applies_the_fulfillment_but_answers_5xx() -> None:
    async with with_faults(apply_then_fail_rate=1.0) as client:
        response = await client.post("/fulfillments", json=ship(quantity=2))
        listed = (await client.get("/fulfillments", params={"orderId": "ord_1"})).json()
        stats = (await client.get("/_admin/stats")).json()
        requests = (await client.get("/_admin/requests")).json()["requests"]
        assert await captured(client) == 2
    assert response.status_code in {500, 502, 503}
    assert len(listed["data"]) == 1, "the fulfillment exists at 'Digital River'"
    assert stats["faultsInjected"]["applyThenFail"] == 1
    assert requests[0]["fulfillmentId"] == listed["data"][0]["id"]
    assert requests[0]["status"] == response.status_code


async def test_apply_then_fail_leaves_a_refused_request_as_it_was() -> None:
    async with with_faults(apply_then_fail_rate=1.0) as client:
        response = await client.post("/fulfillments", json={"orderId": "ord_1"})
    assert response.status_code == 400


async def test_the_same_seed_injects_the_same_faults_in_the_same_order() -> None:
    async def statuses() -> list[int]:
        async with with_faults(
            error_rate=0.3, timeout_rate=0.0, apply_then_fail_rate=0.3, seed=7
        ) as c:
            return [
                (await c.post("/fulfillments", json=ship(f"o{i}"))).status_code for i in range(40)
            ]

    first, second = await statuses(), await statuses()
    assert first == second
    assert {201, 503} <= set(first)


async def test_put_faults_changes_only_the_named_fields_and_rejects_bad_values() -> None:
    async with with_faults(latency_ms=5, error_rate=0.1) as client:
        changed = await client.put("/_admin/faults", json={"errorRate": 0.5, "seed": 3})
        too_much = await client.put("/_admin/faults", json={"timeoutRate": 0.6})
        unknown = await client.put("/_admin/faults", json={"chaos": 1})
        wrong_type = await client.put("/_admin/faults", json={"errorRate": "high"})
        current = (await client.get("/_admin/faults")).json()
    assert changed.json() == current
    assert current == {
        "latencyMs": 5,
        "errorRate": 0.5,
        "errorStatus": 503,
        "timeoutRate": 0.0,
        "timeoutHoldSeconds": 60.0,
        "applyThenFailRate": 0.0,
        "rateLimit": 0.0,
        "seed": 3,
    }
    assert [r.status_code for r in (too_much, unknown, wrong_type)] == [400, 400, 400]
    assert unknown.json()["errors"][0]["code"] == "unknown_parameter"


async def test_faults_never_touch_admin_routes() -> None:
    async with with_faults(error_rate=1.0) as client:
        answers = [
            await client.get("/_admin/stats"),
            await client.get("/_admin/ledger"),
            await client.get("/_admin/requests"),
            await client.get("/_admin/faults"),
        ]
    assert [a.status_code for a in answers] == [200] * 4
