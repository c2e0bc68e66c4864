"""`/_admin`: seeding, the ledger, the request log, counters and reset (docs/architecture.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest

from consumer.sandbox import FaultSettings, SandboxConfig, create_app
from consumer.sandbox.testing import sandbox_client

pytestmark = pytest.mark.anyio

SEED = {
    "orders": [
        {"id": "ord_1", "items": [{"id": "itm_1", "skuId": "sku_1", "quantity": 3}]},
        {"id": "ord_2", "items": [{"id": "itm_2", "skuId": "sku_2", "quantity": 1}]},
    ]
}


def ship(order_id: str, item: str, quantity: int) -> dict[str, Any]:
    return {"orderId": order_id, "items": [{"itemId": item, "quantity": quantity}]}


@pytest.fixture
async def client() -> AsyncIterator[httpx2.AsyncClient]:
    config = SandboxConfig(strict_orders=True, faults=FaultSettings(latency_ms=1))
    async with sandbox_client(create_app(config)) as client:
        yield client


async def test_seeded_orders_start_accepted_and_show_in_the_ledger(
    client: httpx2.AsyncClient,
) -> None:
    seeded = await client.post("/_admin/orders", json=SEED)
    ledger = (await client.get("/_admin/ledger")).json()
    assert seeded.status_code == 201
    assert [o["state"] for o in seeded.json()["orders"]] == ["accepted", "accepted"]
    assert ledger == {
        "orders": {
            "ord_1": {
                "state": "accepted",
                "lines": {"itm_1": {"ordered": 3, "captured": 0, "cancelled": 0}},
            },
            "ord_2": {
                "state": "accepted",
                "lines": {"itm_2": {"ordered": 1, "captured": 0, "cancelled": 0}},
            },
        }
    }


async def test_the_ledger_counts_captured_and_cancelled_units_per_line(
    client: httpx2.AsyncClient,
) -> None:
    await client.post("/_admin/orders", json=SEED)
    await client.post("/fulfillments", json=ship("ord_1", "itm_1", 1))
    await client.post(
        "/fulfillments",
        json={"orderId": "ord_1", "items": [{"itemId": "itm_1", "cancelQuantity": 2}]},
    )
    await client.post("/fulfillments", json=ship("ord_2", "itm_2", 1))
    ledger = (await client.get("/_admin/ledger")).json()["orders"]
    one = (await client.get("/_admin/ledger", params={"orderId": "ord_2"})).json()
    assert ledger["ord_1"] == {
        "state": "fulfilled",
        "lines": {"itm_1": {"ordered": 3, "captured": 1, "cancelled": 2}},
    }
    assert list(one["orders"]) == ["ord_2"]


async def test_seeding_again_identically_is_harmless_but_a_different_order_is_409(
    client: httpx2.AsyncClient,
) -> None:
    assert (await client.post("/_admin/orders", json=SEED)).status_code == 201
    assert (await client.post("/_admin/orders", json=SEED)).status_code == 201
    changed = {"orders": [{"id": "ord_1", "items": [{"id": "itm_1", "quantity": 9}]}]}
    clash = await client.post("/_admin/orders", json=changed)
    assert clash.status_code == 409
    assert clash.json()["errors"][0]["code"] == "order_exists"


@pytest.mark.parametrize(
    "bad",
    [
        {},
        {"orders": [{"id": "ord_x", "items": []}]},
        {"orders": [{"id": "ord_x", "items": [{"id": "i", "quantity": 0}]}]},
        {"orders": [{"id": "ord_x", "items": [{"id": "i", "quantity": 1}], "state": "shipped"}]},
    ],
)
async def test_a_malformed_seed_is_refused_whole(client: httpx2.AsyncClient, bad: Any) -> None:
    response = await client.post("/_admin/orders", json=bad)
    assert response.status_code == 400
    assert (await client.get("/_admin/ledger")).json() == {"orders": {}}


async def test_every_request_is_logged_in_arrival_order_with_status_body_and_upstream_id(
    client: httpx2.AsyncClient,
) -> None:
    await client.post("/_admin/orders", json=SEED)
    first = ship("ord_1", "itm_1", 1)
    await client.post("/fulfillments", json=first, headers={"upstream-id": "u-1"})
    await client.post("/fulfillments", json=ship("ord_1", "itm_1", 5))
    await client.get("/fulfillments", params={"orderId": "ord_2"})
    await client.get("/orders/ord_1")
    log = (await client.get("/_admin/requests")).json()["requests"]
    assert [(r["seq"], r["method"], r["path"], r["orderId"], r["status"]) for r in log] == [
        (1, "POST", "/fulfillments", "ord_1", 201),
        (2, "POST", "/fulfillments", "ord_1", 409),
        (3, "GET", "/fulfillments", "ord_2", 200),
        (4, "GET", "/orders/ord_1", "ord_1", 200),
    ]
    assert log[0]["body"] == first
    assert log[0]["upstreamId"] == "u-1"
    assert log[1]["upstreamId"] is None
    assert log[1]["errorCode"] == "quantity_too_large"
    assert log[0]["receivedAt"].endswith("Z")
    assert all(r["requestId"] for r in log)


async def test_the_request_log_filters_by_order_and_resumes_after_a_seq(
    client: httpx2.AsyncClient,
) -> None:
    await client.post("/_admin/orders", json=SEED)
    for order_id, item in [("ord_1", "itm_1"), ("ord_2", "itm_2"), ("ord_1", "itm_1")]:
        await client.post("/fulfillments", json=ship(order_id, item, 1))
    by_order = (await client.get("/_admin/requests", params={"orderId": "ord_1"})).json()
    after = (await client.get("/_admin/requests", params={"after": 2})).json()
    assert [r["seq"] for r in by_order["requests"]] == [1, 3]
    assert [r["seq"] for r in after["requests"]] == [3]


async def test_stats_count_by_route_and_status(client: httpx2.AsyncClient) -> None:
    await client.post("/_admin/orders", json=SEED)
    await client.post("/fulfillments", json=ship("ord_1", "itm_1", 1))
    await client.post("/fulfillments", json=ship("ord_1", "itm_1", 9))
    await client.get("/fulfillments/ful_nope")
    stats = (await client.get("/_admin/stats")).json()
    assert stats["byRoute"] == {
        "POST /fulfillments": {"201": 1, "409": 1},
        "GET /fulfillments/{id}": {"404": 1},
    }
    assert stats["byStatus"] == {"201": 1, "404": 1, "409": 1}
    assert (stats["received"], stats["answered"], stats["inFlight"]) == (3, 3, 0)
    assert (stats["orders"], stats["fulfillments"], stats["rateLimited"]) == (2, 1, 0)
    assert stats["faultsInjected"] == {"latency": 3, "error": 0, "timeout": 0, "applyThenFail": 0}


async def test_reset_goes_back_to_the_start_including_the_configured_faults(
    client: httpx2.AsyncClient,
) -> None:
    await client.post("/_admin/orders", json=SEED)
    await client.post("/fulfillments", json=ship("ord_1", "itm_1", 1))
    await client.put("/_admin/faults", json={"latencyMs": 0, "errorRate": 1.0})
    assert (await client.post("/_admin/reset")).status_code == 200
    assert (await client.get("/_admin/ledger")).json() == {"orders": {}}
    assert (await client.get("/_admin/requests")).json() == {"requests": []}
    assert (await client.get("/_admin/stats")).json()["received"] == 0
    faults = (await client.get("/_admin/faults")).json()
    assert (faults["latencyMs"], faults["errorRate"]) == (1, 0.0)
