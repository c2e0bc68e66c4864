"""Every contract rule rejects what it must, naming the rule and the field; encoders refuse to
write an invalid event; the JSON form says which field is missing or mistyped."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime

import pytest
from hypothesis import given

from consumer.codec.avro import EventCodec, SchemaStore, event_from_json
from consumer.core.errors import InvalidEvent
from consumer.core.events import (
    CancellationEvent,
    FulfillmentEvent,
    LineQuantity,
    ShipmentEvent,
    Tracking,
)
from consumer.core.validation import EventRuleViolation, validate_event
from tests.strategies import valid_events

SHIPMENT = ShipmentEvent(
    event_id="evt-1",
    order_id="ord_1",
    warehouse_id="wh-1",
    occurred_at=datetime(2024, 5, 1, 12, tzinfo=UTC),
    items=(LineQuantity("itm_1", 2), LineQuantity("itm_2", 1), LineQuantity("itm_3", 5)),
)
CANCELLATION = CancellationEvent(
    event_id="evt-2",
    order_id="ord_1",
    warehouse_id="wh-1",
    occurred_at=datetime(2024, 5, 1, 12, tzinfo=UTC),
    items=(LineQuantity("itm_1", 1),),
)


def _items(*quantities: int) -> tuple[LineQuantity, ...]:
    return tuple(LineQuantity(f"itm_{n}", q) for n, q in enumerate(quantities))


BROKEN: dict[str, tuple[FulfillmentEvent, str, str]] = {
    "empty event id": (dataclasses.replace(SHIPMENT, event_id=""), "event_id_format", "eventId"),
    "65-char event id": (
        dataclasses.replace(SHIPMENT, event_id="e" * 65),
        "event_id_format",
        "eventId",
    ),
    "comma in event id": (
        dataclasses.replace(SHIPMENT, event_id="a,b"),
        "event_id_format",
        "eventId",
    ),
    "space in event id": (
        dataclasses.replace(SHIPMENT, event_id="a b"),
        "event_id_format",
        "eventId",
    ),
    "non-ascii event id": (
        dataclasses.replace(SHIPMENT, event_id="é"),
        "event_id_format",
        "eventId",
    ),
    "empty order id": (dataclasses.replace(SHIPMENT, order_id=""), "length", "orderId"),
    "101-char order id": (dataclasses.replace(SHIPMENT, order_id="o" * 101), "length", "orderId"),
    "empty warehouse id": (dataclasses.replace(SHIPMENT, warehouse_id=""), "length", "warehouseId"),
    "101-char warehouse id": (
        dataclasses.replace(SHIPMENT, warehouse_id="w" * 101),
        "length",
        "warehouseId",
    ),
    "naive occurredAt": (
        dataclasses.replace(SHIPMENT, occurred_at=datetime(2024, 5, 1)),
        "timezone",
        "occurredAt",
    ),
    "no items": (dataclasses.replace(SHIPMENT, items=()), "items_required", "items"),
    "101 items": (dataclasses.replace(SHIPMENT, items=_items(*[1] * 101)), "items_limit", "items"),
    "zero quantity": (
        dataclasses.replace(SHIPMENT, items=_items(1, 1, 0)),
        "quantity_range",
        "items[2].quantity",
    ),
    "negative quantity": (
        dataclasses.replace(CANCELLATION, items=_items(-1)),
        "quantity_range",
        "items[0].quantity",
    ),
    "quantity above a million": (
        dataclasses.replace(SHIPMENT, items=_items(1_000_001)),
        "quantity_range",
        "items[0].quantity",
    ),
    "empty item id": (
        dataclasses.replace(SHIPMENT, items=(LineQuantity("", 1),)),
        "length",
        "items[0].itemId",
    ),
    "101-char item id": (
        dataclasses.replace(SHIPMENT, items=(LineQuantity("i" * 101, 1),)),
        "length",
        "items[0].itemId",
    ),
    "duplicate item id": (
        dataclasses.replace(
            SHIPMENT, items=(LineQuantity("a", 1), LineQuantity("b", 1), LineQuantity("a", 2))
        ),
        "duplicate_item",
        "items[2].itemId",
    ),
    "256-char tracking company": (
        dataclasses.replace(SHIPMENT, tracking=Tracking(company="c" * 256)),
        "length",
        "trackingCompany",
    ),
    "256-char tracking number": (
        dataclasses.replace(SHIPMENT, tracking=Tracking(number="n" * 256)),
        "length",
        "trackingNumber",
    ),
    "2049-char tracking url": (
        dataclasses.replace(SHIPMENT, tracking=Tracking(url="u" * 2049)),
        "length",
        "trackingUrl",
    ),
    "1001-char reason": (dataclasses.replace(CANCELLATION, reason="r" * 1001), "length", "reason"),
}


@pytest.mark.parametrize(("event", "rule", "field"), BROKEN.values(), ids=BROKEN.keys())
def test_each_rule_rejects_with_its_name_and_the_field(
    event: FulfillmentEvent, rule: str, field: str
) -> None:
    with pytest.raises(EventRuleViolation) as caught:
        validate_event(event)

    assert (caught.value.rule, caught.value.field) == (rule, field)
    assert isinstance(caught.value, InvalidEvent)
    assert caught.value.reason.startswith(f"{rule}: ")


@pytest.mark.parametrize(("event", "rule", "field"), BROKEN.values(), ids=BROKEN.keys())
def test_encoders_refuse_to_write_an_invalid_event(
    event: FulfillmentEvent, rule: str, field: str
) -> None:
    codec = EventCodec(SchemaStore.load_default())

    message = f"^{re.escape(field)}: {rule}: "
    with pytest.raises(EventRuleViolation, match=message):
        codec.encode_single_object(event)
    with pytest.raises(EventRuleViolation, match=message):
        codec.encode_confluent(event, 1)


@pytest.mark.parametrize(
    "event",
    [
        dataclasses.replace(SHIPMENT, event_id="e" * 64, order_id="o" * 100, warehouse_id="w"),
        dataclasses.replace(SHIPMENT, event_id="A-z_0.9:x", items=_items(*[1_000_000] * 100)),
        dataclasses.replace(SHIPMENT, tracking=Tracking("c" * 255, "n" * 255, "u" * 2048)),
        dataclasses.replace(SHIPMENT, tracking=Tracking("", "", "")),
        dataclasses.replace(CANCELLATION, reason="r" * 1000),
    ],
    ids=[
        "longest-ids",
        "most-items-largest-quantities",
        "longest-tracking",
        "empty-tracking",
        "longest-reason",
    ],
)
def test_values_at_the_bounds_are_valid(event: FulfillmentEvent) -> None:
    validate_event(event)


@given(event=valid_events())
def test_generated_events_are_valid(event: FulfillmentEvent) -> None:
    validate_event(event)


def _json(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "type": "shipment",
        "eventId": "e-1",
        "orderId": "o",
        "warehouseId": "w",
        "occurredAt": "2024-05-01T12:00:00Z",
        "items": [{"itemId": "i", "quantity": 1}],
    }
    return {k: v for k, v in (base | changes).items() if v is not ...}


JSON_BROKEN: dict[str, tuple[dict[str, object], str, str]] = {
    "no type": (_json(type=...), "required", "type"),
    "unknown type": (_json(type="refund"), "type", "type"),
    "no event id": (_json(eventId=...), "required", "eventId"),
    "numeric order id": (_json(orderId=42), "type", "orderId"),
    "no warehouse id": (_json(warehouseId=...), "required", "warehouseId"),
    "no occurredAt": (_json(occurredAt=...), "required", "occurredAt"),
    "unparsable occurredAt": (_json(occurredAt="yesterday"), "type", "occurredAt"),
    "occurredAt without offset": (
        _json(occurredAt="2024-05-01T12:00:00"),
        "timezone",
        "occurredAt",
    ),
    "boolean occurredAt": (_json(occurredAt=True), "type", "occurredAt"),
    "float occurredAt": (_json(occurredAt=1.5), "type", "occurredAt"),
    "huge occurredAt": (_json(occurredAt=10**20), "type", "occurredAt"),
    "no items": (_json(items=...), "required", "items"),
    "items not a list": (_json(items={"itemId": "i"}), "type", "items"),
    "item not an object": (_json(items=["i"]), "type", "items[0]"),
    "item without id": (_json(items=[{"quantity": 1}]), "required", "items[0].itemId"),
    "item without quantity": (_json(items=[{"itemId": "i"}]), "required", "items[0].quantity"),
    "string quantity": (
        _json(items=[{"itemId": "i", "quantity": "1"}]),
        "type",
        "items[0].quantity",
    ),
    "boolean quantity": (
        _json(items=[{"itemId": "i", "quantity": True}]),
        "type",
        "items[0].quantity",
    ),
    "unknown item field": (
        _json(items=[{"itemId": "i", "quantity": 1, "sku": "s"}]),
        "unknown_field",
        "items[0].sku",
    ),
    "misspelt field": (_json(trackingNumbr="1Z"), "unknown_field", "trackingNumbr"),
    "reason on a shipment": (_json(reason="late"), "unknown_field", "reason"),
    "tracking on a cancellation": (
        _json(type="cancellation", trackingUrl="u"),
        "unknown_field",
        "trackingUrl",
    ),
    "numeric tracking number": (_json(trackingNumber=7), "type", "trackingNumber"),
    "then the contract rules": (_json(items=[]), "items_required", "items"),
}


@pytest.mark.parametrize(("obj", "rule", "field"), JSON_BROKEN.values(), ids=JSON_BROKEN.keys())
def test_json_events_are_rejected_with_rule_and_field(
    obj: dict[str, object], rule: str, field: str
) -> None:
    with pytest.raises(EventRuleViolation) as caught:
        event_from_json(obj)

    assert (caught.value.rule, caught.value.field) == (rule, field)
