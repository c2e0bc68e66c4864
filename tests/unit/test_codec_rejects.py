"""Bytes the codec cannot turn into a valid event are rejected with the class the engine
dead-letters by: undecodable, unknown schema, key mismatch, invalid event."""

from __future__ import annotations

import asyncio
import contextlib
import io
from datetime import UTC, datetime

import pytest
from fastavro import parse_schema, schemaless_writer
from hypothesis import given
from hypothesis import strategies as st

from consumer.codec.avro import EventCodec, SchemaNotFetched, SchemaStore
from consumer.core.errors import (
    BadInput,
    InfrastructureError,
    KeyMismatch,
    UndecodableRecord,
    UnknownSchema,
)
from consumer.core.events import FulfillmentEvent, LineQuantity, ShipmentEvent
from consumer.core.validation import EventRuleViolation
from tests.strategies import valid_events

STORE = SchemaStore.load_default()
CODEC = EventCodec(STORE)
SHIPMENT = ShipmentEvent(
    event_id="evt-1",
    order_id="ord_1",
    warehouse_id="wh-1",
    occurred_at=datetime(2024, 5, 1, 12, tzinfo=UTC),
    items=(LineQuantity("itm_1", 2),),
)
VALUE = CODEC.encode_single_object(SHIPMENT)
HEADER, BODY = VALUE[:10], VALUE[10:]


class Unreachable:
    async def get_schema(self, schema_id: int) -> dict[str, object]:
        raise InfrastructureError("schema registry GET failed: ConnectError")


class Registry:
    def __init__(self, schema: dict[str, object]) -> None:
        self.schema = schema

    async def get_schema(self, schema_id: int) -> dict[str, object]:
        return self.schema


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "empty value"),
        (b"", "empty value"),
        (b"\x7b\x22", "unknown magic byte 0x7b"),  # JSON sent by mistake
        (b"\xc3\x02" + VALUE[2:], "unknown magic byte 0xc3"),  # single-object, wrong version
        (b"\xc3\x01\x01\x02", "truncated single-object header"),
        (b"\x00\x00\x01", "truncated Confluent header"),
        (HEADER + BODY[:-3], "not a fulfillment.events.ShipmentEvent Avro body"),
        (HEADER, "not a fulfillment.events.ShipmentEvent Avro body"),
        (HEADER + b"\xff" * 12, "not a fulfillment.events.ShipmentEvent Avro body"),
        (VALUE + b"\x00", "1 bytes after the Avro body"),
    ],
    ids=[
        "none",
        "empty",
        "bad-magic",
        "single-object-v2-header",
        "truncated-header",
        "truncated-confluent-header",
        "truncated-body",
        "header-only",
        "garbage-body",
        "trailing-bytes",
    ],
)
def test_bytes_that_are_not_our_avro_are_undecodable(value: bytes | None, reason: str) -> None:
    with pytest.raises(UndecodableRecord, match=reason) as caught:
        CODEC.decode(b"ord_1", value)

    assert caught.value.error_class == "undecodable"


def test_an_unknown_fingerprint_is_an_unknown_schema() -> None:
    value = b"\xc3\x01" + bytes(8) + BODY

    with pytest.raises(UnknownSchema, match="unknown schema fingerprint 0000000000000000"):
        CODEC.decode(b"ord_1", value)


def test_confluent_framing_without_a_registry_is_an_unknown_schema() -> None:
    with pytest.raises(UnknownSchema, match="no schema registry is configured"):
        CODEC.decode(b"ord_1", CODEC.encode_confluent(SHIPMENT, 1))


class EmptyRegistry:
    async def get_schema(self, schema_id: int) -> dict[str, object]:
        raise UnknownSchema(f"schema id {schema_id} is not in the schema registry")


def test_an_id_the_registry_does_not_know_is_an_unknown_schema() -> None:
    codec = EventCodec(STORE, EmptyRegistry())

    with pytest.raises(UnknownSchema, match="schema id 7 is not in the schema registry"):
        asyncio.run(codec.decode_fetching(b"ord_1", CODEC.encode_confluent(SHIPMENT, 7)))


def test_a_registry_schema_that_is_not_ours_is_an_unknown_schema() -> None:
    codec = EventCodec(STORE, Registry({"type": "record", "name": "other.Thing", "fields": []}))

    with pytest.raises(UnknownSchema, match=r"'other\.Thing', not one of ours"):
        asyncio.run(codec.decode_fetching(b"ord_1", CODEC.encode_confluent(SHIPMENT, 1)))


def test_a_registry_schema_we_cannot_read_as_ours_is_an_unknown_schema() -> None:
    incompatible = dict(STORE.latest("shipment").definition)
    incompatible["fields"] = [{"name": "eventId", "type": "int"}]
    codec = EventCodec(STORE, Registry(incompatible))

    with pytest.raises(UnknownSchema, match="cannot be read as ours"):
        asyncio.run(codec.decode_fetching(b"ord_1", b"\x00\x00\x00\x00\x01\x02"))


def test_a_registry_schema_not_fetched_yet_is_no_bad_input_and_decode_does_not_wait() -> None:
    registry = Registry(dict(STORE.latest("shipment").definition))
    codec = EventCodec(STORE, registry)
    value = CODEC.encode_confluent(SHIPMENT, 4)

    with pytest.raises(SchemaNotFetched) as caught:
        codec.decode(b"ord_1", value)
    assert caught.value.schema_id == 4
    assert not isinstance(caught.value, BadInput)
    asyncio.run(codec.fetch_schema(4))
    assert codec.decode(b"ord_1", value).event == SHIPMENT


def test_an_unreachable_registry_is_not_bad_input() -> None:
    codec = EventCodec(STORE, Unreachable())

    with pytest.raises(InfrastructureError):
        asyncio.run(codec.decode_fetching(b"ord_1", CODEC.encode_confluent(SHIPMENT, 1)))


@pytest.mark.parametrize(
    ("key", "field", "reason"),
    [
        (None, "key", "record has no key"),
        (b"\xff\xfe", "key", "not UTF-8"),
        (b"ord_2", "orderId", "record key 'ord_2' != orderId 'ord_1'"),
        (b"ORD_1", "orderId", "!= orderId"),
    ],
    ids=["no-key", "not-utf8", "other-order", "case-differs"],
)
def test_a_key_that_is_not_the_order_id_is_a_key_mismatch(
    key: bytes | None, field: str, reason: str
) -> None:
    with pytest.raises(KeyMismatch, match=reason) as caught:
        CODEC.decode(key, VALUE)

    assert caught.value.field == field
    assert caught.value.error_class == "key_mismatch"


def _written_by_another_producer(**changes: object) -> bytes:
    """Single-object bytes of a shipment record our encoders would refuse to write."""
    record: dict[str, object] = {
        "eventId": "evt-1",
        "orderId": "ord_1",
        "warehouseId": "wh-1",
        "occurredAt": 0,
        "items": [{"itemId": "itm_1", "quantity": 2}],
        "trackingCompany": None,
        "trackingNumber": None,
        "trackingUrl": None,
    } | changes
    version = STORE.latest("shipment")
    body = io.BytesIO()
    schemaless_writer(body, parse_schema(dict(version.definition)), record)
    return b"\xc3\x01" + version.fingerprint + body.getvalue()


@pytest.mark.parametrize(
    ("changes", "rule", "field"),
    [
        ({"items": [{"itemId": "itm_1", "quantity": 0}]}, "quantity_range", "items[0].quantity"),
        ({"items": []}, "items_required", "items"),
        ({"eventId": "a,b"}, "event_id_format", "eventId"),
        ({"items": [{"itemId": "x", "quantity": 1}] * 2}, "duplicate_item", "items[1].itemId"),
        ({"trackingUrl": "u" * 2049}, "length", "trackingUrl"),
    ],
    ids=["zero-quantity", "no-items", "comma-in-event-id", "duplicate-item", "long-url"],
)
def test_a_decoded_event_that_breaks_a_rule_is_invalid_with_rule_and_field(
    changes: dict[str, object], rule: str, field: str
) -> None:
    with pytest.raises(EventRuleViolation) as caught:
        CODEC.decode(b"ord_1", _written_by_another_producer(**changes))

    assert (caught.value.rule, caught.value.field) == (rule, field)
    assert caught.value.error_class == "invalid_event"


@given(event=valid_events(), noise=st.binary(max_size=64))
def test_any_bytes_after_a_known_header_fail_only_as_bad_input(
    event: FulfillmentEvent, noise: bytes
) -> None:
    header = CODEC.encode_single_object(event)[:10]

    with contextlib.suppress(BadInput):
        CODEC.decode(event.order_id.encode(), header + noise)


@given(value=st.binary(max_size=64))
def test_any_bytes_at_all_fail_only_as_bad_input(value: bytes) -> None:
    with contextlib.suppress(BadInput):
        CODEC.decode(b"k", value)
