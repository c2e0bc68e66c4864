"""Digital River's rules as the sandbox enforces them: orders, lines and the 409 codes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest

from consumer.sandbox import SandboxConfig, create_app
from consumer.sandbox.testing import sandbox_client

pytestmark = pytest.mark.anyio


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def order(order_id: str, state: str = "accepted", **lines: int) -> dict[str, Any]:
    items = [{"id": item, "skuId": f"sku_{item}", "quantity": qty} for item, qty in lines.items()]
    return {"id": order_id, "items": items, "state": state}


def post(order_id: str, *items: tuple[str, int, int]) -> dict[str, Any]:
    """`items`: (item id, quantity shipped, quantity cancelled); zeros are left out."""
    lines = []
    for item, shipped, cancelled in items:
        line: dict[str, Any] = {"itemId": item}
        if shipped:
            line["quantity"] = shipped
        if cancelled:
            line["cancelQuantity"] = cancelled
        lines.append(line)
    return {"orderId": order_id, "items": lines}


def code_of(response: httpx2.Response) -> tuple[int, str, str]:
    error = response.json()["errors"][0]
    return response.status_code, error["code"], error["parameter"]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def strict(clock: FakeClock) -> AsyncIterator[httpx2.AsyncClient]:
    app = create_app(SandboxConfig(strict_orders=True, complete_after_s=10), clock=clock)
    async with sandbox_client(app) as client:
        orders = [
            order("ord_1", itm_a=3, itm_b=2),
            order("ord_done", state="complete", itm_a=1),
            order("ord_gone", state="cancelled", itm_a=1),
            order("ord_review", state="in_review", itm_a=1),
        ]
        assert (await client.post("/_admin/orders", json={"orders": orders})).status_code == 201
        yield client


async def lines_of(client: httpx2.AsyncClient, order_id: str) -> dict[str, dict[str, int]]:
    ledger = (await client.get("/_admin/ledger", params={"orderId": order_id})).json()
    lines: dict[str, dict[str, int]] = ledger["orders"][order_id]["lines"]
    return lines


async def test_strict_mode_answers_404_not_found_for_an_order_never_seeded(
    strict: httpx2.AsyncClient,
) -> None:
    response = await strict.post("/fulfillments", json=post("ord_unknown", ("itm_a", 1, 0)))
    assert code_of(response) == (404, "not_found", "orderId")
    assert response.json()["type"] == "not_found"


async def test_lenient_mode_creates_an_unknown_order_on_first_sight_with_its_lines() -> None:
    app = create_app(SandboxConfig(strict_orders=False, lenient_quantity=5))
    async with sandbox_client(app) as client:
        assert (await client.get("/orders/ord_new")).status_code == 404
        first = await client.post("/fulfillments", json=post("ord_new", ("itm_a", 2, 0)))
        later_line = await client.post("/fulfillments", json=post("ord_new", ("itm_b", 0, 5)))
        too_many = await client.post("/fulfillments", json=post("ord_new", ("itm_a", 4, 0)))
        seen = (await client.get("/orders/ord_new")).json()
    assert first.status_code == later_line.status_code == 201
    assert code_of(too_many) == (409, "quantity_too_large", "quantity")
    assert seen["state"] == "accepted"
    assert seen["items"] == [
        {"id": "itm_a", "skuId": "sku_itm_a", "quantity": 5, "state": "created"},
        {"id": "itm_b", "skuId": "sku_itm_b", "quantity": 5, "state": "cancelled"},
    ]


async def test_an_item_not_on_a_seeded_order_gets_400_invalid_parameter_on_item_id(
    strict: httpx2.AsyncClient,
) -> None:
    response = await strict.post("/fulfillments", json=post("ord_1", ("itm_zzz", 1, 0)))
    assert code_of(response) == (400, "invalid_parameter", "itemId")


async def test_more_than_is_left_on_a_line_gets_409_quantity_too_large(
    strict: httpx2.AsyncClient,
) -> None:
    assert (await strict.post("/fulfillments", json=post("ord_1", ("itm_a", 2, 0)))).is_success
    response = await strict.post("/fulfillments", json=post("ord_1", ("itm_a", 1, 1)))
    assert code_of(response) == (409, "quantity_too_large", "quantity")
    assert response.json()["type"] == "conflict"


async def test_a_repeated_item_id_in_one_request_adds_up_against_what_is_left(
    strict: httpx2.AsyncClient,
) -> None:
    response = await strict.post(
        "/fulfillments", json=post("ord_1", ("itm_a", 2, 0), ("itm_a", 2, 0))
    )
    assert code_of(response) == (409, "quantity_too_large", "quantity")


async def test_a_line_with_everything_shipped_gets_409_item_fulfilled(
    strict: httpx2.AsyncClient,
) -> None:
    assert (await strict.post("/fulfillments", json=post("ord_1", ("itm_a", 2, 1)))).is_success
    response = await strict.post("/fulfillments", json=post("ord_1", ("itm_a", 1, 0)))
    assert code_of(response) == (409, "item_fulfilled", "itemId")


async def test_a_line_with_everything_cancelled_gets_409_item_cancelled(
    strict: httpx2.AsyncClient,
) -> None:
    assert (await strict.post("/fulfillments", json=post("ord_1", ("itm_b", 0, 2)))).is_success
    response = await strict.post("/fulfillments", json=post("ord_1", ("itm_b", 0, 1)))
    assert code_of(response) == (409, "item_cancelled", "itemId")


async def test_a_request_is_applied_whole_or_not_at_all(strict: httpx2.AsyncClient) -> None:
    response = await strict.post(
        "/fulfillments", json=post("ord_1", ("itm_a", 3, 0), ("itm_b", 3, 0))
    )
    assert code_of(response) == (409, "quantity_too_large", "quantity")
    assert await lines_of(strict, "ord_1") == {
        "itm_a": {"ordered": 3, "captured": 0, "cancelled": 0},
        "itm_b": {"ordered": 2, "captured": 0, "cancelled": 0},
    }
    listed = (await strict.get("/fulfillments", params={"orderId": "ord_1"})).json()
    assert listed == {"data": [], "hasMore": False}


async def test_an_order_with_every_line_done_is_fulfilled_then_complete_and_refuses_more(
    strict: httpx2.AsyncClient, clock: FakeClock
) -> None:
    done = await strict.post("/fulfillments", json=post("ord_1", ("itm_a", 3, 0), ("itm_b", 1, 1)))
    assert done.status_code == 201
    fulfilled = (await strict.get("/orders/ord_1")).json()
    again = await strict.post("/fulfillments", json=post("ord_1", ("itm_a", 1, 0)))
    clock.now += 10
    complete = (await strict.get("/orders/ord_1")).json()
    after = await strict.post("/fulfillments", json=post("ord_1", ("itm_a", 1, 0)))
    assert fulfilled["state"] == "fulfilled"
    assert [item["state"] for item in fulfilled["items"]] == ["fulfilled", "fulfilled"]
    assert code_of(again) == (409, "order_fulfilled", "orderId")
    assert complete["state"] == "complete"
    assert code_of(after) == (409, "order_complete", "orderId")


async def test_an_order_with_every_line_cancelled_becomes_cancelled(
    strict: httpx2.AsyncClient,
) -> None:
    response = await strict.post(
        "/fulfillments", json=post("ord_1", ("itm_a", 0, 3), ("itm_b", 0, 2))
    )
    assert response.status_code == 201
    assert (await strict.get("/orders/ord_1")).json()["state"] == "cancelled"
    again = await strict.post("/fulfillments", json=post("ord_1", ("itm_a", 0, 1)))
    assert code_of(again) == (409, "order_cancelled", "orderId")


@pytest.mark.parametrize(
    ("order_id", "code"),
    [
        ("ord_done", "order_complete"),
        ("ord_gone", "order_cancelled"),
        ("ord_review", "invalid_order_state"),
    ],
)
async def test_an_order_seeded_in_a_closed_state_refuses_fulfillments_with_409(
    strict: httpx2.AsyncClient, order_id: str, code: str
) -> None:
    response = await strict.post("/fulfillments", json=post(order_id, ("itm_a", 1, 0)))
    assert code_of(response) == (409, code, "orderId")


async def test_get_order_shows_state_and_lines_and_404_for_an_unknown_one(
    strict: httpx2.AsyncClient,
) -> None:
    known = await strict.get("/orders/ord_1")
    unknown = await strict.get("/orders/ord_nope")
    assert known.json() == {
        "id": "ord_1",
        "state": "accepted",
        "items": [
            {"id": "itm_a", "skuId": "sku_itm_a", "quantity": 3, "state": "created"},
            {"id": "itm_b", "skuId": "sku_itm_b", "quantity": 2, "state": "created"},
        ],
    }
    assert code_of(unknown) == (404, "not_found", "id")


async def test_get_fulfillment_by_id_returns_it_and_404_for_an_unknown_id(
    strict: httpx2.AsyncClient,
) -> None:
    created = (await strict.post("/fulfillments", json=post("ord_1", ("itm_a", 1, 0)))).json()
    found = await strict.get(f"/fulfillments/{created['id']}")
    missing = await strict.get("/fulfillments/ful_nope")
    assert found.json() == created
    assert code_of(missing) == (404, "not_found", "id")
