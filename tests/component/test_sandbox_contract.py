"""The sandbox against Digital River's OpenAPI file: it accepts only what the schema allows, and
answers in the schema's shapes. Skips when ../shared/contracts is not beside the clone."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_schema_validator import OAS30ReadValidator, OAS30WriteValidator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from consumer.sandbox import SandboxConfig, create_app
from consumer.sandbox.errors import ApiError
from consumer.sandbox.testing import sandbox_client
from consumer.sandbox.validation import parse_fulfillment_request

DOCUMENT_URI = "urn:dr-fulfillments-openapi"


def validator(document: dict[str, object], schema: str, *, write: bool) -> Any:
    """An OAS 3.0 validator for `#/components/schemas/<schema>` resolving refs in `document`."""
    resource = Resource.from_contents(document, default_specification=DRAFT4)
    registry: Registry[Any] = Registry().with_resource(DOCUMENT_URI, resource)
    ref = {"$ref": f"{DOCUMENT_URI}#/components/schemas/{schema}"}
    kind = OAS30WriteValidator if write else OAS30ReadValidator
    return kind(ref, registry=registry)


def schema_errors(validator: Any, instance: object) -> list[str]:
    return [error.message for error in validator.iter_errors(instance)]


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 5),
    st.floats(allow_nan=False, width=32),
    st.text(max_size=3),
)
item_fields = st.sampled_from(
    [
        "itemId",
        "quantity",
        "cancelQuantity",
        "skuId",
        "trackingNumber",
        "subfulfillerId",
        "distributorCost",
        "shipmentItemId",
        "bogus",
    ]
)
top_fields = st.sampled_from(
    [
        "orderId",
        "items",
        "metadata",
        "trackingCompany",
        "trackingNumber",
        "trackingUrl",
        "shipmentId",
        "currency",
        "partnerId",
        "liveMode",
        "id",
    ]
)
wild_items = st.lists(st.dictionaries(item_fields, json_scalars, max_size=4), max_size=3)
# mostly valid counts, sometimes anything: accepted bodies must be common enough to matter
counts = st.one_of(
    st.integers(1, 5), st.integers(0, 5), st.integers(-1, 5), st.none(), json_scalars
)
plausible_items = st.lists(
    st.fixed_dictionaries(
        {"itemId": st.text(min_size=1, max_size=4), "quantity": counts},
        optional={"cancelQuantity": counts, "trackingNumber": st.text(max_size=3)},
    ),
    min_size=1,
    max_size=3,
)
metadata = st.dictionaries(st.text(max_size=42), json_scalars, max_size=22)
small_metadata = st.dictionaries(
    st.text(min_size=1, max_size=5),
    st.one_of(st.text(max_size=5), st.booleans(), st.integers()),
    max_size=3,
)
bodies = st.one_of(
    st.dictionaries(top_fields, st.one_of(json_scalars, wild_items, metadata), max_size=5),
    st.fixed_dictionaries(
        {"orderId": st.text(min_size=1, max_size=4), "items": plausible_items},
        optional={
            "metadata": st.one_of(small_metadata, metadata),
            "trackingNumber": st.one_of(st.text(max_size=3), json_scalars),
            "currency": st.text(max_size=3),
        },
    ),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies)
def test_every_body_the_sandbox_accepts_validates_as_a_fulfillment_request(
    openapi_document: dict[str, object], body: dict[str, Any]
) -> None:
    try:
        parse_fulfillment_request(body)
    except ApiError:
        return
    assert schema_errors(validator(openapi_document, "FulfillmentRequest", write=True), body) == []


@pytest.mark.anyio
async def test_every_accepted_request_and_every_answer_matches_the_openapi_schemas(
    openapi_document: dict[str, object],
) -> None:
    """Drive valid and invalid requests, then check the log: each 201 request body against
    FulfillmentRequest (write), each 201 answer against Fulfillment, each error against Errors."""
    request_schema = validator(openapi_document, "FulfillmentRequest", write=True)
    fulfillment_schema = validator(openapi_document, "Fulfillment", write=False)
    errors_schema = validator(openapi_document, "Errors", write=False)
    sent = [
        {"orderId": "o1", "items": [{"itemId": "a", "quantity": 1}]},
        {
            "orderId": "o1",
            "items": [
                {"itemId": "a", "cancelQuantity": 2},
                {"itemId": "b", "quantity": 1, "cancelQuantity": 1},
            ],
            "trackingCompany": "UPS",
            "trackingNumber": "1Z",
            "trackingUrl": "https://t.example/1Z",
            "metadata": {"fc_events_0": "e1,e2", "fc_source": "3:10-11", "flag": True, "n": 4},
        },
        {"orderId": "o2", "items": [{"itemId": "a", "quantity": None, "cancelQuantity": 1}]},
        {"orderId": "o1", "items": [{"itemId": "a", "quantity": "1"}]},
        {"orderId": "o1", "items": [{"itemId": "a", "skuId": "s", "quantity": 1}]},
        {"orderId": "o1", "items": [{"itemId": "a", "quantity": 1}], "trackingNumber": None},
        {"orderId": "o1", "items": [{"itemId": "a", "quantity": 10**7}]},
    ]
    answers = []
    async with sandbox_client(create_app(SandboxConfig(lenient_quantity=100))) as client:
        for body in sent:
            answers.append(await client.post("/fulfillments", json=body))
        log = (await client.get("/_admin/requests")).json()["requests"]
    accepted = [record["body"] for record in log if record["status"] == 201]
    assert len(accepted) == 3
    for body in accepted:
        assert schema_errors(request_schema, body) == []
    for answer in answers:
        schema = fulfillment_schema if answer.status_code == 201 else errors_schema
        assert schema_errors(schema, answer.json()) == [], answer.text
