"""Events survive both wire formats, with every released schema version and across versions."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.codec.avro import (
    DecodedEvent,
    EventCodec,
    SchemaStore,
    SchemaVersion,
    encode_confluent,
    encode_single_object,
    event_from_json,
    event_to_json,
)
from consumer.codec.schema_store import default_schema_files
from consumer.core.errors import UnknownSchema
from consumer.core.events import FulfillmentEvent
from tests.strategies import valid_events

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "schemas"
STORE = SchemaStore.load_default()
CODEC = EventCodec(STORE)
# the shipped schemas plus a test-only ShipmentEvent v2 that adds a field with a default
EVOLVED = SchemaStore.from_files([*default_schema_files(), FIXTURES / "ShipmentEvent.v2.avsc"])


class SchemaIds:
    """An in-memory registry: ids -> schemas (the real client is tested in test_schema_registry)."""

    def __init__(self, schemas: Mapping[int, Mapping[str, Any]]) -> None:
        self.schemas = dict(schemas)
        self.calls: list[int] = []

    async def get_schema(self, schema_id: int) -> Mapping[str, Any]:
        self.calls.append(schema_id)
        if schema_id not in self.schemas:
            raise UnknownSchema(f"schema id {schema_id} is not in the schema registry")
        return self.schemas[schema_id]


def fetching(codec: EventCodec, key: bytes, value: bytes) -> DecodedEvent:
    return asyncio.run(codec.decode_fetching(key, value))


def _key(event: FulfillmentEvent) -> bytes:
    return event.order_id.encode()


@pytest.mark.parametrize("version", STORE.versions, ids=lambda v: v.label)
@given(data=st.data())
def test_every_shipped_version_round_trips_in_single_object_encoding(
    version: SchemaVersion, data: st.DataObject
) -> None:
    event = data.draw(valid_events(version.kind))
    value = CODEC.encode_single_object(event, version=version)

    decoded = CODEC.decode(_key(event), value)

    assert decoded.event == event
    assert (decoded.encoding, decoded.schema_name, decoded.schema_version) == (
        "single-object",
        version.full_name,
        version.version,
    )
    assert decoded.fingerprint_kind == "spec"
    assert not decoded.used_variant_fingerprint


@given(event=valid_events(), schema_id=st.integers(min_value=0, max_value=2**32 - 1))
def test_events_round_trip_with_confluent_framing(event: FulfillmentEvent, schema_id: int) -> None:
    registry = SchemaIds({schema_id: STORE.latest(event.kind).definition})
    codec = EventCodec(STORE, registry)

    decoded = fetching(codec, _key(event), codec.encode_confluent(event, schema_id))

    assert decoded.event == event
    assert (decoded.encoding, decoded.schema_id) == ("confluent", schema_id)
    assert decoded.schema_version == STORE.latest(event.kind).version
    assert decoded.fingerprint_kind is None


@given(event=valid_events())
def test_module_level_encoders_write_what_the_codec_reads(event: FulfillmentEvent) -> None:
    codec = EventCodec(STORE, SchemaIds({5: STORE.latest(event.kind).definition}))

    assert codec.decode(_key(event), encode_single_object(event)).event == event
    assert fetching(codec, _key(event), encode_confluent(event, 5)).event == event


def test_registry_schemas_are_fetched_once_per_id() -> None:
    registry = SchemaIds({9: STORE.latest("cancellation").definition})
    codec = EventCodec(STORE, registry)
    event = event_from_json(
        {
            "type": "cancellation",
            "eventId": "e-1",
            "orderId": "o",
            "warehouseId": "w",
            "occurredAt": 0,
            "items": [{"itemId": "i", "quantity": 1}],
        }
    )
    for _ in range(3):
        fetching(codec, b"o", codec.encode_confluent(event, 9))

    assert registry.calls == [9]


def test_a_registry_schema_that_differs_from_ours_still_decodes_without_a_version() -> None:
    definition = dict(STORE.latest("shipment").definition)
    note = {"name": "note", "type": "string", "default": ""}
    definition["fields"] = [*definition["fields"], note]
    codec = EventCodec(STORE, SchemaIds({3: definition}))
    # a producer's codec that knows this unreleased schema, to write its body
    writer = EventCodec(SchemaStore([*STORE.versions, _as_version(definition, 99)]))
    event = event_from_json(
        {
            "type": "shipment",
            "eventId": "e-1",
            "orderId": "o",
            "warehouseId": "w",
            "occurredAt": 0,
            "items": [{"itemId": "i", "quantity": 1}],
        }
    )
    body = writer.encode_single_object(event)[10:]

    decoded = fetching(codec, b"o", b"\x00" + (3).to_bytes(4, "big") + body)

    assert decoded.event == event
    assert decoded.schema_version is None


def _as_version(definition: Mapping[str, Any], version: int) -> SchemaVersion:
    return SchemaVersion.from_text(f"ShipmentEvent.v{version}.avsc", json.dumps(definition))


@given(event=valid_events("shipment"))
def test_old_version_bytes_decode_while_the_store_holds_a_newer_version(
    event: FulfillmentEvent,
) -> None:
    codec = EventCodec(EVOLVED)
    v1, v2 = (v for v in EVOLVED.versions if v.kind == "shipment")
    assert (v1.version, v2.version) == (1, 2)
    assert EVOLVED.latest("shipment") == v2

    from_v1 = codec.decode(_key(event), codec.encode_single_object(event, version=v1))
    from_v2 = codec.decode(_key(event), codec.encode_single_object(event))

    assert from_v1.event == from_v2.event == event
    assert (from_v1.schema_version, from_v2.schema_version) == (1, 2)


@given(event=valid_events("shipment"))
def test_bytes_of_the_newer_version_are_unknown_to_a_store_without_it(
    event: FulfillmentEvent,
) -> None:
    value = EventCodec(EVOLVED).encode_single_object(event)

    with pytest.raises(UnknownSchema, match="unknown schema fingerprint"):
        CODEC.decode(_key(event), value)


def test_shipped_v1_fingerprints_are_unchanged_by_adding_a_version() -> None:
    assert {v.label: v.fingerprint for v in STORE.versions}.items() <= {
        v.label: v.fingerprint for v in EVOLVED.versions
    }.items()


@given(event=valid_events())
def test_json_form_round_trips(event: FulfillmentEvent) -> None:
    assert event_from_json(event_to_json(event)) == event


def test_json_form_uses_the_avro_field_names() -> None:
    event = event_from_json(
        {
            "type": "shipment",
            "eventId": "e-1",
            "orderId": "ord_1",
            "warehouseId": "wh",
            "occurredAt": "2024-05-01T14:00:00.123456+02:00",
            "items": [{"itemId": "itm_1", "quantity": 2}],
            "trackingNumber": "1Z",
        }
    )

    assert event_to_json(event) == {
        "type": "shipment",
        "eventId": "e-1",
        "orderId": "ord_1",
        "warehouseId": "wh",
        "occurredAt": "2024-05-01T12:00:00.123Z",
        "items": [{"itemId": "itm_1", "quantity": 2}],
        "trackingCompany": None,
        "trackingNumber": "1Z",
        "trackingUrl": None,
    }


def test_json_occurred_at_may_be_epoch_millis() -> None:
    as_millis = event_from_json(
        {
            "type": "cancellation",
            "eventId": "e",
            "orderId": "o",
            "warehouseId": "w",
            "occurredAt": 1714564800123,
            "items": [{"itemId": "i", "quantity": 1}],
        }
    )

    assert event_to_json(as_millis)["occurredAt"] == "2024-05-01T12:00:00.123Z"


def test_writer_schemas_are_the_latest_versions_to_register() -> None:
    schemas = EventCodec(EVOLVED).writer_schemas()

    assert schemas == {
        "shipment": EVOLVED.latest("shipment").definition,
        "cancellation": EVOLVED.latest("cancellation").definition,
    }
