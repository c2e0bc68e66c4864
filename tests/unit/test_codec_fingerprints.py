"""Fingerprints: the spec's CRC-64-AVRO of the Parsing Canonical Form, and the variant Python's
`avro` library computes, which the consumer accepts and reports."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastavro.schema import fingerprint as fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form

from consumer.codec.avro import EventCodec, SchemaStore
from consumer.codec.schema_store import (
    SchemaVersion,
    canonical_form,
    default_schema_files,
    rabin_fingerprint,
)
from consumer.core.errors import ConfigurationError
from consumer.core.events import LineQuantity, ShipmentEvent

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "schemas"
STORE = SchemaStore.load_default()
ALL_VERSIONS = [  # shipped and test-only schema versions alike
    SchemaVersion.from_text(path.name, path.read_text())
    for path in [*default_schema_files(), *sorted(FIXTURES.glob("*.avsc"))]
]

# From the Avro specification's test data (share/test/data/schema-tests.txt): the fingerprint as
# a signed 64-bit integer, whose little-endian bytes single-object encoding writes.
SPEC_VECTORS = {
    '"null"': 7195948357588979594,
    '"boolean"': -6970731678124411036,
    '"int"': 8247732601305521295,
    '"long"': -3434872931120570953,
    '"float"': 5583340709985441680,
    '"double"': -8181574048448539266,
    '"bytes"': 5746618253357095269,
    '"string"': -8142146995180207161,
}

# The wire fingerprints of the shipped v1 schemas, hex of the 8 bytes after C3 01. "spec" is what
# fastavro (`fingerprint(to_parsing_canonical_form(s), "CRC-64-AVRO")`) and Java's
# SchemaNormalization give; "avro-1.12" is `avro.schema.parse(text).fingerprint().hex()` with avro
# 1.12.2. Producers can check theirs against these; they must never change.
V1_FINGERPRINTS = {
    "ShipmentEvent.v1": ("babfc46c9f1898b9", "68d9600fe57e943d"),
    "CancellationEvent.v1": ("3569607f189e0612", "94195080679f10dc"),
}

TRICKY_SCHEMAS: list[Any] = [
    {"type": "int"},
    ["null", {"type": "string", "logicalType": "uuid"}],
    {"type": "map", "values": {"type": "array", "items": "bytes"}},
    {"type": "enum", "name": "Colour", "namespace": "x.y", "symbols": ["RED", "GREEN"], "doc": "d"},
    {"type": "fixed", "name": "a.b.Hash", "size": 16, "aliases": ["H"]},
    {
        "type": "record",
        "name": "Outer",
        "namespace": "ns",
        "doc": "ignored",
        "fields": [
            {
                "name": "inner",
                "type": {
                    "type": "record",
                    "name": "Inner",
                    "fields": [
                        {"name": "n", "type": {"type": "long", "logicalType": "timestamp-millis"}},
                    ],
                },
            },
            {"name": "again", "type": "Inner", "default": {"n": 0}},
            {
                "name": "elsewhere",
                "type": {
                    "type": "record",
                    "name": "Other",
                    "namespace": "",
                    "fields": [{"name": "x", "type": "ns.Inner"}],
                },
            },
        ],
    },
]


@pytest.mark.parametrize(("text", "expected"), SPEC_VECTORS.items())
def test_rabin_fingerprint_matches_the_specification_vectors(text: str, expected: int) -> None:
    assert int.from_bytes(rabin_fingerprint(text), "little", signed=True) == expected


@pytest.mark.parametrize("schema", TRICKY_SCHEMAS, ids=lambda s: json.dumps(s)[:30])
def test_spec_canonical_form_agrees_with_fastavro(schema: Any) -> None:
    form = canonical_form(schema)

    assert form == to_parsing_canonical_form(schema)
    assert rabin_fingerprint(form).hex() == fastavro_fingerprint(form, "CRC-64-AVRO")


@pytest.mark.parametrize("version", ALL_VERSIONS, ids=lambda v: v.label)
def test_every_schema_file_has_fastavros_spec_fingerprint(version: SchemaVersion) -> None:
    form = to_parsing_canonical_form(dict(version.definition))

    assert version.fingerprint.hex() == fastavro_fingerprint(form, "CRC-64-AVRO")


def test_logical_type_is_not_part_of_the_spec_canonical_form() -> None:
    form = canonical_form(STORE.latest("shipment").definition)

    assert '{"name":"occurredAt","type":"long"}' in form
    assert "logicalType" not in form


def test_shipped_v1_fingerprints_are_the_published_ones() -> None:
    assert {
        v.label: (v.fingerprint.hex(), v.variant_fingerprint.hex()) for v in STORE.versions
    } == V1_FINGERPRINTS


@pytest.mark.parametrize("version", ALL_VERSIONS, ids=lambda v: v.label)
def test_variant_fingerprint_is_what_the_avro_library_computes(version: SchemaVersion) -> None:
    avro_schema = pytest.importorskip("avro.schema")  # the dev extra installs it
    parsed = avro_schema.parse(json.dumps(version.definition))

    assert canonical_form(version.definition, kind="avro-1.12") == parsed.canonical_form
    assert version.variant_fingerprint == parsed.fingerprint()
    assert version.variant_fingerprint != version.fingerprint


@pytest.mark.parametrize("schema", TRICKY_SCHEMAS, ids=lambda s: json.dumps(s)[:30])
def test_variant_canonical_form_agrees_with_the_avro_library(schema: Any) -> None:
    avro_schema = pytest.importorskip("avro.schema")

    assert (
        canonical_form(schema, kind="avro-1.12")
        == avro_schema.parse(json.dumps(schema)).canonical_form
    )


def test_an_avro_library_producer_is_decoded_and_its_variant_reported() -> None:
    avro_schema = pytest.importorskip("avro.schema")
    avro_io = pytest.importorskip("avro.io")
    shipped = STORE.latest("shipment")
    schema = avro_schema.parse(json.dumps(shipped.definition))
    body = io.BytesIO()
    avro_io.DatumWriter(schema).write(
        {
            "eventId": "evt-1",
            "orderId": "ord_1",
            "warehouseId": "wh-1",
            "occurredAt": datetime(2024, 5, 1, 12, tzinfo=UTC),
            "items": [{"itemId": "itm_1", "quantity": 2}],
            "trackingCompany": None,
            "trackingNumber": "1Z",
            "trackingUrl": None,
        },
        avro_io.BinaryEncoder(body),
    )
    # what a warehouse team writes following the spec's framing with the library's fingerprint
    value = b"\xc3\x01" + schema.fingerprint() + body.getvalue()

    decoded = EventCodec(STORE).decode(b"ord_1", value)

    assert decoded.used_variant_fingerprint
    assert decoded.fingerprint_kind == "avro-1.12"
    assert decoded.schema_version == shipped.version
    assert decoded.event.items == (LineQuantity("itm_1", 2),)
    assert isinstance(decoded.event, ShipmentEvent)
    assert decoded.event.tracking.number == "1Z"


def test_the_precomputed_variant_fingerprint_is_accepted_without_the_avro_library() -> None:
    codec = EventCodec(STORE)
    spec_value = codec.encode_single_object(
        ShipmentEvent("e", "o", "w", datetime(2024, 5, 1, tzinfo=UTC), (LineQuantity("i", 1),))
    )
    variant = bytes.fromhex(V1_FINGERPRINTS["ShipmentEvent.v1"][1])

    decoded = codec.decode(b"o", spec_value[:2] + variant + spec_value[10:])

    assert decoded.fingerprint_kind == "avro-1.12"


@pytest.mark.parametrize(
    ("file_name", "text", "reason"),
    [
        ("ShipmentEvent.avsc", "{}", "not <Name>.v<N>.avsc"),
        ("ShipmentEvent.v1.avsc", "{not json", "not an Avro schema"),
        ("ShipmentEvent.v1.avsc", '{"type": "record", "name": "Other", "fields": []}', "not ours"),
        (
            "ShipmentEvent.v1.avsc",
            '{"type": "record", "name": "fulfillment.events.CancellationEvent", "fields": []}',
            "not ours",
        ),
    ],
    ids=["no-version", "not-json", "foreign-record", "name-differs-from-file"],
)
def test_a_malformed_schema_file_is_a_configuration_error(
    file_name: str, text: str, reason: str
) -> None:
    with pytest.raises(ConfigurationError, match=reason):
        SchemaVersion.from_text(file_name, text)


def test_a_store_needs_a_schema_for_each_event_kind() -> None:
    shipments = [v for v in STORE.versions if v.kind == "shipment"]

    with pytest.raises(ConfigurationError, match="no schema for \\['cancellation'\\]"):
        SchemaStore(shipments)


def test_a_version_cannot_be_released_twice() -> None:
    with pytest.raises(ConfigurationError, match="appears twice"):
        SchemaStore([*STORE.versions, STORE.versions[0]])
