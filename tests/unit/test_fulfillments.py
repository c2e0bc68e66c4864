"""build_request / event_ids_of: valid Digital River bodies whose metadata names their events."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from openapi_schema_validator import OAS30WriteValidator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from consumer.core.events import FulfillmentEvent, Tracking
from consumer.core.fulfillments import (
    MAX_EVENT_ID_CHARS,
    MAX_EVENTS_PER_REQUEST,
    METADATA_MAX_KEYS,
    METADATA_MAX_VALUE_CHARS,
    build_request,
    event_ids_of,
)
from consumer.core.lanes import Batch, CoalescingPolicy, PartitionLanes, PendingEvent
from tests.event_builders import TRACKINGS, cancellation, event_streams, shipment, totals

ITEM_FIELDS = {"itemId", "quantity", "cancelQuantity"}
BODY_FIELDS = {"orderId", "items", "trackingCompany", "trackingNumber", "trackingUrl", "metadata"}


@pytest.fixture(scope="module")
def validator(openapi_document: dict[str, object]) -> Any:
    resource = Resource.from_contents(openapi_document, default_specification=DRAFT4)
    registry: Registry[Any] = Registry().with_resource("urn:dr-openapi", resource)
    schema = {"$ref": "urn:dr-openapi#/components/schemas/FulfillmentRequest"}
    return OAS30WriteValidator(schema, registry=registry)


def batch_of(events: list[FulfillmentEvent], partition: int = 3, start: int = 100) -> Batch:
    entries = tuple(PendingEvent(start + n, event) for n, event in enumerate(events))
    return Batch(partition, events[0].order_id, entries)


def batches_from(events: list[FulfillmentEvent]) -> list[Batch]:
    """Batches exactly as the lanes would cut them."""
    lanes = PartitionLanes(3, CoalescingPolicy(MAX_EVENTS_PER_REQUEST))
    for offset, event in enumerate(events):
        lanes.add(offset, event)
    out: list[Batch] = []
    while batches := lanes.next_batches(0.0, 100):
        for batch in batches:
            lanes.complete(batch)
        out.extend(batches)
    return out


def sent_totals(body: dict[str, object]) -> Counter[tuple[str, str, str]]:
    counted: Counter[tuple[str, str, str]] = Counter()
    items = body["items"]
    assert isinstance(items, list)
    for item in items:
        counted[(str(body["orderId"]), "shipment", item["itemId"])] += item.get("quantity", 0)
        counted[(str(body["orderId"]), "cancellation", item["itemId"])] += item.get(
            "cancelQuantity", 0
        )
    return +counted


def check_shape(body: dict[str, object]) -> None:
    assert set(body) <= BODY_FIELDS
    assert all(value is not None for value in body.values())
    items = body["items"]
    assert isinstance(items, list)
    assert items
    for item in items:
        assert set(item) <= ITEM_FIELDS
        assert item.keys() & {"quantity", "cancelQuantity"}
        for field in ("quantity", "cancelQuantity"):
            value = item.get(field, 1)
            assert type(value) is int
            assert value >= 1
    metadata = body["metadata"]
    assert isinstance(metadata, dict)
    assert len(metadata) <= METADATA_MAX_KEYS
    assert all(len(k) <= 40 and len(v) <= METADATA_MAX_VALUE_CHARS for k, v in metadata.items())


@given(event_streams(max_size=30))
def test_every_body_is_a_valid_fulfillment_request_carrying_the_same_units(
    validator: Any, events: list[FulfillmentEvent]
) -> None:
    total: Counter[tuple[str, str, str]] = Counter()
    for batch in batches_from(events):
        body = build_request(batch)
        assert list(validator.iter_errors(body)) == []
        check_shape(body)
        assert body["orderId"] == batch.order_id
        assert event_ids_of(body) == frozenset(batch.event_ids)
        total += sent_totals(body)
    assert total == totals(events)


event_ids = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-",
    min_size=1,
    max_size=MAX_EVENT_ID_CHARS,
)


@given(st.lists(event_ids, min_size=1, max_size=MAX_EVENTS_PER_REQUEST, unique=True))
def test_event_ids_round_trip_through_metadata_within_limits(
    validator: Any, ids: list[str]
) -> None:
    body = build_request(batch_of([shipment(event_id) for event_id in ids]))
    assert event_ids_of(body) == frozenset(ids)
    check_shape(body)
    assert list(validator.iter_errors(body)) == []


def test_the_largest_batch_of_the_longest_ids_still_fits() -> None:
    ids = [f"{n:064d}" for n in range(MAX_EVENTS_PER_REQUEST)]
    body = build_request(batch_of([shipment(event_id) for event_id in ids]))
    metadata = body["metadata"]
    assert isinstance(metadata, dict)
    assert len(metadata) == METADATA_MAX_KEYS
    assert event_ids_of(body) == frozenset(ids)


def test_one_event_more_than_the_cap_is_refused() -> None:
    ids = [f"{n:064d}" for n in range(MAX_EVENTS_PER_REQUEST + 1)]
    with pytest.raises(ValueError, match="do not fit"):
        build_request(batch_of([shipment(event_id) for event_id in ids]))


@pytest.mark.parametrize("event_id", ["a,b", "x" * (MAX_EVENT_ID_CHARS + 1)])
def test_ids_that_could_not_be_read_back_are_refused(event_id: str) -> None:
    with pytest.raises(ValueError, match="cannot be recorded"):
        build_request(batch_of([shipment(event_id)]))


def test_shipped_and_cancelled_units_are_summed_per_line_in_first_appearance_order() -> None:
    tracking = Tracking(company="Fedex", number="1Z1")
    body = build_request(
        batch_of(
            [
                shipment("e1", items=[("itm_2", 1), ("itm_1", 2)]),
                cancellation("e2", items=[("itm_1", 1), ("itm_3", 4)]),
                shipment("e3", items=[("itm_2", 3)], tracking=tracking),
            ]
        )
    )
    assert body == {
        "orderId": "ord_a",
        "items": [
            {"itemId": "itm_2", "quantity": 4},
            {"itemId": "itm_1", "quantity": 2, "cancelQuantity": 1},
            {"itemId": "itm_3", "cancelQuantity": 4},
        ],
        "trackingCompany": "Fedex",
        "trackingNumber": "1Z1",
        "metadata": {"fc_events_0": "e1,e2,e3", "fc_source": "3:100-102"},
    }


def test_a_batch_with_two_tracking_triples_is_refused() -> None:
    with pytest.raises(ValueError, match="tracking"):
        build_request(
            batch_of([shipment("e1", tracking=TRACKINGS[1]), shipment("e2", tracking=TRACKINGS[2])])
        )


def test_a_batch_mixing_orders_is_refused() -> None:
    with pytest.raises(ValueError, match="of order"):
        build_request(batch_of([shipment("e1", "ord_a"), shipment("e2", "ord_b")]))


@pytest.mark.parametrize(
    "fulfillment",
    [
        {},
        {"metadata": None},
        {"metadata": "fc_events_0"},
        {"metadata": {"coupon": "iOS", "fc_events_0": 7}},
        {"metadata": {"fc_source": "1:2-3"}},
    ],
)
def test_foreign_or_missing_metadata_names_no_events(fulfillment: dict[str, object]) -> None:
    assert event_ids_of(fulfillment) == frozenset()


def test_event_ids_are_read_from_every_events_key() -> None:
    fulfillment = {"id": "ful_1", "metadata": {"fc_events_0": "a,b", "fc_events_1": "c,", "x": "d"}}
    assert event_ids_of(fulfillment) == {"a", "b", "c"}
