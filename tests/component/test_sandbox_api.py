"""The sandbox's Digital River routes, in-process: what each request gets back (DR-API.md)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest

from consumer.sandbox import SandboxConfig, create_app
from consumer.sandbox.testing import sandbox_client

pytestmark = pytest.mark.anyio

ORDER = {
    "id": "ord_1",
    "items": [
        {"id": "itm_a", "skuId": "sku_a", "quantity": 3},
        {"id": "itm_b", "skuId": "sku_b", "quantity": 2},
    ],
}


def body(*items: dict[str, Any], order_id: str = "ord_1", **extra: Any) -> dict[str, Any]:
    return {"orderId": order_id, "items": list(items), **extra}


def ship(item: str, quantity: int) -> dict[str, Any]:
    return {"itemId": item, "quantity": quantity}


def cancel(item: str, quantity: int) -> dict[str, Any]:
    return {"itemId": item, "cancelQuantity": quantity}


def error_of(response: httpx2.Response) -> tuple[int, str, str, str]:
    payload = response.json()
    assert len(payload["errors"]) == 1, "only the first error comes back"
    return (
        response.status_code,
        payload["type"],
        payload["errors"][0]["code"],
        payload["errors"][0]["parameter"],
    )


@pytest.fixture
async def client() -> AsyncIterator[httpx2.AsyncClient]:
    """A strict sandbox with ORDER seeded."""
    async with sandbox_client(create_app(SandboxConfig(strict_orders=True))) as client:
        seeded = await client.post("/_admin/orders", json={"orders": [ORDER]})
        assert seeded.status_code == 201
        yield client


async def test_a_valid_post_answers_201_with_a_digital_river_fulfillment(
    client: httpx2.AsyncClient,
) -> None:
    response = await client.post(
        "/fulfillments",
        json=body(ship("itm_a", 2), cancel("itm_b", 1), trackingNumber="1Z", metadata={"k": "v"}),
    )
    assert response.status_code == 201
    fulfillment = response.json()
    assert re.fullmatch(r"ful_[0-9a-f-]{36}", fulfillment["id"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", fulfillment["createdTime"])
    assert fulfillment["orderId"] == "ord_1"
    assert fulfillment["items"] == [
        {"itemId": "itm_a", "skuId": "sku_a", "quantity": 2, "cancelQuantity": 0},
        {"itemId": "itm_b", "skuId": "sku_b", "quantity": 0, "cancelQuantity": 1},
    ]
    assert fulfillment["liveMode"] is False
    assert fulfillment["metadata"] == {"k": "v"}
    assert fulfillment["trackingNumber"] == "1Z"


async def test_every_response_carries_a_distinct_x_dr_requestid(client: httpx2.AsyncClient) -> None:
    answers = [
        await client.post("/fulfillments", json=body(ship("itm_a", 1))),
        await client.post("/fulfillments", json=body(ship("itm_a", 9))),
        await client.get("/orders/ord_1"),
        await client.get("/fulfillments/ful_missing"),
        await client.delete("/fulfillments"),
    ]
    ids = [answer.headers.get("x-dr-requestid") for answer in answers]
    assert all(ids)
    assert len(set(ids)) == len(ids)
    assert answers[4].status_code == 405
    assert answers[4].json()["type"] == "method_not_allowed"


async def test_a_live_key_makes_live_mode_fulfillments() -> None:
    app = create_app(SandboxConfig())
    async with sandbox_client(app, key="sk_live_abc") as client:
        response = await client.post("/fulfillments", json=body(ship("itm_a", 1)))
    assert response.json()["liveMode"] is True


@pytest.mark.parametrize("key", [None, "pk_test_wrong", "sk_test_unknown"])
async def test_a_missing_or_unknown_key_gets_401_unauthorized(key: str | None) -> None:
    app = create_app(SandboxConfig(api_keys=("sk_test_known",)))
    async with sandbox_client(app, key=key) as client:
        response = await client.post("/fulfillments", json=body(ship("itm_a", 1)))
        ledger = (await client.get("/_admin/ledger")).json()
    assert error_of(response)[:3] == (401, "unauthorized", "unauthorized")
    assert ledger == {"orders": {}}


async def test_a_forbidden_key_gets_403_on_every_call() -> None:
    app = create_app(SandboxConfig(forbidden_keys=("sk_test_blocked",)))
    async with sandbox_client(app, key="sk_test_blocked") as client:
        answers = [
            await client.post("/fulfillments", json=body(ship("itm_a", 1))),
            await client.get("/fulfillments", params={"orderId": "ord_1"}),
        ]
    assert [error_of(a)[:2] for a in answers] == [(403, "forbidden")] * 2


async def test_an_accept_header_without_json_gets_406() -> None:
    async with sandbox_client(create_app(SandboxConfig())) as client:
        response = await client.get("/fulfillments", headers={"Accept": "text/html"})
    assert error_of(response)[:2] == (406, "not_acceptable")


BAD_BODIES: list[tuple[str, Any, str, str]] = [
    ("not json", "{", "invalid_parameter", "body"),
    ("not an object", [1], "invalid_parameter", "body"),
    (
        "unknown top-level field",
        body(ship("itm_a", 1), upstreamId="x"),
        "unknown_parameter",
        "upstreamId",
    ),
    (
        "unknown item field",
        body({"itemId": "itm_a", "quantity": 1, "qty": 1}),
        "unknown_parameter",
        "qty",
    ),
    (
        "read-only skuId",
        body({"itemId": "itm_a", "skuId": "sku_a", "quantity": 1}),
        "invalid_parameter",
        "skuId",
    ),
    ("missing orderId", {"items": [ship("itm_a", 1)]}, "missing_parameter", "orderId"),
    ("missing items", {"orderId": "ord_1"}, "missing_parameter", "items"),
    ("empty items", body(), "invalid_parameter", "items"),
    ("missing itemId", body({"quantity": 1}), "missing_parameter", "itemId"),
    ("string quantity", body({"itemId": "itm_a", "quantity": "1"}), "invalid_integer", "quantity"),
    ("float quantity", body({"itemId": "itm_a", "quantity": 1.0}), "invalid_integer", "quantity"),
    ("bool quantity", body({"itemId": "itm_a", "quantity": True}), "invalid_integer", "quantity"),
    (
        "string cancelQuantity",
        body({"itemId": "itm_a", "cancelQuantity": "2"}),
        "invalid_integer",
        "cancelQuantity",
    ),
    ("negative quantity", body(ship("itm_a", -1)), "invalid_quantity_amount", "quantity"),
    (
        "negative cancelQuantity",
        body(cancel("itm_a", -1)),
        "invalid_quantity_amount",
        "cancelQuantity",
    ),
    ("both absent", body({"itemId": "itm_a"}), "invalid_quantity_amount", "quantity"),
    (
        "both zero",
        body({"itemId": "itm_a", "quantity": 0, "cancelQuantity": 0}),
        "invalid_quantity_amount",
        "quantity",
    ),
    (
        "null trackingNumber",
        body(ship("itm_a", 1), trackingNumber=None),
        "invalid_parameter",
        "trackingNumber",
    ),
    (
        "null trackingCompany",
        body(ship("itm_a", 1), trackingCompany=None),
        "invalid_parameter",
        "trackingCompany",
    ),
    (
        "null trackingUrl",
        body(ship("itm_a", 1), trackingUrl=None),
        "invalid_parameter",
        "trackingUrl",
    ),
    (
        "21 metadata keys",
        body(ship("itm_a", 1), metadata={f"k{i}": "v" for i in range(21)}),
        "too_many_metadata_pairs",
        "metadata",
    ),
    (
        "41-char metadata key",
        body(ship("itm_a", 1), metadata={"k" * 41: "v"}),
        "invalid_metadata_key",
        "k" * 41,
    ),
    (
        "501-char metadata value",
        body(ship("itm_a", 1), metadata={"k": "v" * 501}),
        "invalid_metadata_value",
        "k",
    ),
    (
        "null metadata value",
        body(ship("itm_a", 1), metadata={"k": None}),
        "invalid_metadata_value",
        "k",
    ),
]


@pytest.mark.parametrize(
    ("case", "payload", "code", "parameter"), BAD_BODIES, ids=[c[0] for c in BAD_BODIES]
)
async def test_an_invalid_body_gets_400_with_digital_rivers_code_and_applies_nothing(
    client: httpx2.AsyncClient, case: str, payload: Any, code: str, parameter: str
) -> None:
    if isinstance(payload, str):
        response = await client.post("/fulfillments", content=payload)
    else:
        response = await client.post("/fulfillments", json=payload)
    ledger = (await client.get("/_admin/ledger")).json()
    assert error_of(response) == (400, "bad_request", code, parameter)
    lines = ledger["orders"]["ord_1"]["lines"]
    assert all(line["captured"] == line["cancelled"] == 0 for line in lines.values())


async def test_only_the_first_of_several_errors_comes_back(client: httpx2.AsyncClient) -> None:
    response = await client.post(
        "/fulfillments", json=body({"itemId": "itm_a", "quantity": "x"}, ship("itm_b", -1))
    )
    assert error_of(response)[2] == "invalid_integer"


async def test_a_null_quantity_counts_as_absent_as_the_schema_marks_it_nullable(
    client: httpx2.AsyncClient,
) -> None:
    response = await client.post(
        "/fulfillments", json=body({"itemId": "itm_a", "quantity": None, "cancelQuantity": 1})
    )
    assert response.status_code == 201
    assert response.json()["items"][0]["quantity"] == 0


async def test_metadata_of_20_keys_at_the_size_limits_round_trips(
    client: httpx2.AsyncClient,
) -> None:
    metadata: dict[str, Any] = {f"{i:02d}".ljust(40, "k"): f"{i:02d}" * 250 for i in range(18)}
    metadata |= {"flag": True, "count": 7}
    created = (
        await client.post("/fulfillments", json=body(ship("itm_a", 1), metadata=metadata))
    ).json()
    fetched = (await client.get(f"/fulfillments/{created['id']}")).json()
    listed = (await client.get("/fulfillments", params={"orderId": "ord_1"})).json()
    assert created["metadata"] == fetched["metadata"] == listed["data"][0]["metadata"] == metadata
