"""`GET /fulfillments`: newest first, filters, and cursor pages (`startingAfter`, `hasMore`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest

from consumer.sandbox import SandboxConfig, create_app
from consumer.sandbox.testing import sandbox_client

pytestmark = pytest.mark.anyio


def ship(order_id: str, item: str, quantity: int = 1, **extra: Any) -> dict[str, Any]:
    return {"orderId": order_id, "items": [{"itemId": item, "quantity": quantity}], **extra}


@pytest.fixture
async def client() -> AsyncIterator[httpx2.AsyncClient]:
    async with sandbox_client(create_app(SandboxConfig())) as client:
        yield client


async def create(client: httpx2.AsyncClient, payload: dict[str, Any]) -> str:
    response = await client.post("/fulfillments", json=payload)
    assert response.status_code == 201
    fulfillment_id: str = response.json()["id"]
    return fulfillment_id


async def page(client: httpx2.AsyncClient, **params: Any) -> tuple[list[str], bool]:
    response = await client.get("/fulfillments", params=params)
    assert response.status_code == 200, response.text
    answer = response.json()
    return [f["id"] for f in answer["data"]], answer["hasMore"]


async def test_an_orders_fulfillments_are_listed_newest_first_and_only_that_orders(
    client: httpx2.AsyncClient,
) -> None:
    mine = [await create(client, ship("ord_1", "itm_a")) for _ in range(3)]
    await create(client, ship("ord_2", "itm_a"))
    assert await page(client, orderId="ord_1") == (mine[::-1], False)


async def test_pages_follow_starting_after_until_has_more_is_false(
    client: httpx2.AsyncClient,
) -> None:
    created = [await create(client, ship("ord_1", "itm_a")) for _ in range(7)]
    seen: list[str] = []
    ids, has_more = await page(client, orderId="ord_1", limit=3)
    seen += ids
    while has_more:
        ids, has_more = await page(client, orderId="ord_1", limit=3, startingAfter=seen[-1])
        seen += ids
    assert seen == created[::-1]


async def test_ending_before_pages_back_towards_the_newest(client: httpx2.AsyncClient) -> None:
    created = [await create(client, ship("ord_1", "itm_a")) for _ in range(5)]
    newest_first = created[::-1]
    assert await page(client, orderId="ord_1", limit=2, endingBefore=newest_first[3]) == (
        newest_first[1:3],
        True,
    )


async def test_a_full_last_page_says_has_more_false(client: httpx2.AsyncClient) -> None:
    for _ in range(4):
        await create(client, ship("ord_1", "itm_a"))
    first, more = await page(client, orderId="ord_1", limit=2)
    second, more_after = await page(client, orderId="ord_1", limit=2, startingAfter=first[-1])
    assert (more, more_after, len(second)) == (True, False, 2)


async def test_the_default_limit_is_ten(client: httpx2.AsyncClient) -> None:
    for _ in range(12):
        await create(client, ship("ord_1", "itm_a"))
    ids, has_more = await page(client, orderId="ord_1")
    assert (len(ids), has_more) == (10, True)


async def test_ids_filter_accepts_repeated_and_comma_separated_ids(
    client: httpx2.AsyncClient,
) -> None:
    a, b, c = [await create(client, ship("ord_1", "itm_a")) for _ in range(3)]
    assert await page(client, ids=f"{a},{c}") == ([c, a], False)
    response = await client.get("/fulfillments", params=[("ids", a), ("ids", b)])
    assert [f["id"] for f in response.json()["data"]] == [b, a]


async def test_sku_and_tracking_filters_select_matching_fulfillments(
    client: httpx2.AsyncClient,
) -> None:
    tracked = await create(
        client, ship("ord_1", "itm_a", trackingNumber="1Z", trackingCompany="UPS")
    )
    other = await create(client, ship("ord_1", "itm_b"))
    assert await page(client, trackingNumber="1Z") == ([tracked], False)
    assert await page(client, trackingCompany="UPS") == ([tracked], False)
    assert await page(client, skuId="sku_itm_b") == ([other], False)


async def test_created_time_bounds_filter_by_creation_time(client: httpx2.AsyncClient) -> None:
    created = await create(client, ship("ord_1", "itm_a"))
    assert await page(client, **{"createdTime[gte]": "2000-01-01T00:00:00Z"}) == ([created], False)
    assert await page(client, **{"createdTime[lt]": "2000-01-01T00:00:00Z"}) == ([], False)
    stamp = (await client.get(f"/fulfillments/{created}")).json()["createdTime"]
    assert await page(client, createdTime=stamp) == ([created], False)
    assert await page(client, createdTime="2000-01-01T00:00:00Z") == ([], False)


async def test_a_created_time_window_pages_newest_first_in_hundreds(
    client: httpx2.AsyncClient,
) -> None:
    made = [await create(client, ship(f"ord_{i}", "itm_a")) for i in range(3)]
    window = {
        "createdTime[gte]": "2000-01-01T00:00:00Z",
        "createdTime[lte]": "2999-01-01T00:00:00Z",
    }
    first, more = await page(client, limit=2, **window)
    assert (first, more) == (made[::-1][:2], True)
    rest, more = await page(client, limit=2, startingAfter=first[-1], **window)
    assert (rest, more) == ([made[0]], False)


@pytest.mark.parametrize(
    ("params", "code", "parameter"),
    [
        ({"limit": 0}, "invalid_parameter", "limit"),
        ({"limit": 101}, "invalid_parameter", "limit"),
        ({"limit": "ten"}, "invalid_parameter", "limit"),
        ({"startingAfter": "ful_nope"}, "invalid_parameter", "startingAfter"),
        ({"createdTime[gt]": "yesterday"}, "invalid_parameter", "createdTime[gt]"),
        ({"order": "ord_1"}, "unknown_parameter", "order"),
    ],
)
async def test_a_bad_query_gets_400_naming_the_parameter(
    client: httpx2.AsyncClient, params: dict[str, Any], code: str, parameter: str
) -> None:
    response = await client.get("/fulfillments", params=params)
    error = response.json()["errors"][0]
    assert (response.status_code, error["code"], error["parameter"]) == (400, code, parameter)
