"""Kafka record bytes <-> events. [pure + fastavro]

Two wire formats, chosen by the producer (PRODUCT.md, "The event contract"):

    single-object   C3 01 | CRC-64-AVRO fingerprint of the writer schema, 8 bytes LE | Avro body
    Confluent       00    | Schema Registry id of the writer schema, 4 bytes BE      | Avro body

The writer schema comes from the fingerprint (every released version in `schemas/`, see
`consumer.codec.schema_store`) or from the registry. The reader schema is always our latest
version of the same record, so events written with an older version decode with today's fields
(new fields take their defaults). Every decoded event is checked with
`consumer.core.validation.validate_event` and against the record key.

fastavro is touched only in this module; whatever it raises becomes a `consumer.core.errors` type.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, Literal, Protocol, TypeAlias

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError
from fastavro.schema import SchemaParseException, UnknownType

from consumer.codec.event_json import contract_fields, event_from_json, event_to_json
from consumer.codec.schema_store import (
    SCHEMA_KINDS,
    FingerprintKind,
    SchemaStore,
    SchemaVersion,
    full_name,
)
from consumer.core.errors import (
    ConfigurationError,
    KeyMismatch,
    SchemaNotFetched,
    UndecodableRecord,
    UnknownSchema,
)
from consumer.core.events import (
    CancellationEvent,
    EventKind,
    FulfillmentEvent,
    LineQuantity,
    ShipmentEvent,
    Tracking,
)
from consumer.core.validation import validate_event

__all__ = [  # the schema store's names too: callers build a codec from this module alone
    "DecodedEvent",
    "Encoding",
    "EventCodec",
    "FingerprintKind",
    "SchemaNotFetched",
    "SchemaStore",
    "SchemaVersion",
    "WriterSchemaSource",
    "encode_confluent",
    "encode_single_object",
    "event_from_json",
    "event_to_json",
]

Encoding: TypeAlias = Literal["single-object", "confluent"]

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
CONFLUENT_MAGIC = 0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)
_NO_REGISTRY = (
    "Confluent framing (schema id {}) but no schema registry is configured (SCHEMA_REGISTRY_URL)"
)


class WriterSchemaSource(Protocol):
    """Where Confluent schema ids are resolved (`consumer.kafka.schema_registry.SchemaRegistry`).

    `get_schema` returns the schema as parsed JSON and raises UnknownSchema for an id the registry
    does not have, InfrastructureError when the registry cannot be asked, ConfigurationError when
    it refuses us.
    """

    async def get_schema(self, schema_id: int) -> Mapping[str, Any]: ...


@dataclass(frozen=True, slots=True)
class DecodedEvent:
    """A valid event and how it arrived.

    `schema_version` is None for a registry schema that equals none of our released versions;
    `schema_id` is set for Confluent framing, `fingerprint_kind` for single-object encoding.
    """

    event: FulfillmentEvent
    encoding: Encoding
    schema_name: str
    schema_version: int | None
    schema_id: int | None = None
    fingerprint_kind: FingerprintKind | None = None

    @property
    def used_variant_fingerprint(self) -> bool:
        """The producer fingerprinted with avro-1.12's canonical form, not the spec's."""
        return self.fingerprint_kind == "avro-1.12"


@dataclass(frozen=True, slots=True)
class _Writer:
    kind: EventKind
    name: str
    version: int | None
    parsed: Any  # fastavro's parsed schema


class EventCodec:
    """Decodes and encodes events against a `SchemaStore` and, optionally, a Schema Registry.

    `decode` never waits: a registry schema it does not hold yet raises SchemaNotFetched, and the
    caller awaits `fetch_schema` (the only coroutine here) before decoding again. Registry schemas
    are kept for the life of the codec. Used from one event loop.
    """

    def __init__(self, store: SchemaStore, registry: WriterSchemaSource | None = None) -> None:
        """Raise ConfigurationError if a stored schema is not valid Avro."""
        self.store = store
        self._registry = registry
        self._parsed = {v: _parse_ours(v) for v in store.versions}
        self._by_id: dict[int, _Writer] = {}

    def decode(self, key: bytes | None, value: bytes | None) -> DecodedEvent:
        """The event in a Kafka record, or one of the BadInput errors (all: dead-letter it).

        UndecodableRecord: no value, unknown magic byte, truncated header or body, a body that is
        not Avro of the writer schema, trailing bytes. UnknownSchema: a fingerprint or registry id
        we do not know, a registry schema that is not ours, Confluent framing without a registry.
        KeyMismatch: key missing, not UTF-8, or not the orderId. InvalidEvent
        (`validation.EventRuleViolation`): a contract rule is broken.
        SchemaNotFetched is not bad input: fetch the schema, then decode again.
        """
        if not value:
            raise UndecodableRecord("empty value (tombstone or empty record)")
        if value[:2] == SINGLE_OBJECT_MAGIC:
            if len(value) < 10:
                raise UndecodableRecord(f"truncated single-object header ({len(value)} bytes)")
            found = self.store.by_fingerprint(value[2:10])
            if found is None:
                raise UnknownSchema(f"unknown schema fingerprint {value[2:10].hex()}")
            version, fingerprint_kind = found
            parsed = self._parsed[version]
            writer = _Writer(version.kind, version.full_name, version.version, parsed)
            event = self._read(value[10:], writer)
            decoded = DecodedEvent(
                event, "single-object", writer.name, writer.version, None, fingerprint_kind
            )
        elif value[0] == CONFLUENT_MAGIC:
            if len(value) < 5:
                raise UndecodableRecord(f"truncated Confluent header ({len(value)} bytes)")
            schema_id = int.from_bytes(value[1:5], "big")
            writer = self._registry_writer(schema_id)
            event = self._read(value[5:], writer)
            decoded = DecodedEvent(event, "confluent", writer.name, writer.version, schema_id)
        else:
            raise UndecodableRecord(f"unknown magic byte 0x{value[0]:02x}")
        _check_key(key, event.order_id)
        validate_event(event)
        return decoded

    def encode_single_object(
        self, event: FulfillmentEvent, *, version: SchemaVersion | None = None
    ) -> bytes:
        """Validate `event` (InvalidEvent) and write it in single-object encoding, with `version`
        of its schema (default: the latest)."""
        version = version or self.store.latest(event.kind)
        if version.kind != event.kind:
            raise ValueError(f"{version.label} cannot hold a {event.kind} event")
        return SINGLE_OBJECT_MAGIC + version.fingerprint + self._write(event, version)

    def encode_confluent(self, event: FulfillmentEvent, schema_id: int) -> bytes:
        """Validate `event` and write it with Confluent framing; `schema_id` must be the registry id
        of the latest version of its schema (the one written)."""
        if not 0 <= schema_id < 2**32:
            raise ValueError(f"schema id {schema_id} does not fit 4 bytes")
        body = self._write(event, self.store.latest(event.kind))
        return bytes([CONFLUENT_MAGIC]) + schema_id.to_bytes(4, "big") + body

    def writer_schemas(self) -> dict[EventKind, Mapping[str, Any]]:
        """The schema `encode_confluent` writes for each event kind: what a publisher registers."""
        return {kind: self.store.latest(kind).definition for kind in set(SCHEMA_KINDS.values())}

    def _read(self, body: bytes, writer: _Writer) -> FulfillmentEvent:
        reader = self._parsed[self.store.latest(writer.kind)]
        stream = io.BytesIO(body)
        try:
            record = schemaless_reader(stream, writer.parsed, reader)
        except SchemaResolutionError as exc:
            raise UnknownSchema(f"{writer.name} as written cannot be read as ours: {exc}") from exc
        # Garbage makes fastavro raise whatever the bytes provoke (EOFError, UnicodeDecodeError,
        # OverflowError, ValueError, IndexError, ...): all of them mean "not this schema's Avro".
        except Exception as exc:
            raise UndecodableRecord(f"not a {writer.name} Avro body: {exc!r}") from exc
        if not isinstance(record, dict):
            raise UndecodableRecord(f"{writer.name} did not decode to a record")
        if stream.tell() != len(body):
            raise UndecodableRecord(f"{len(body) - stream.tell()} bytes after the Avro body")
        try:
            return _event_from_record(writer.kind, record)
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise UndecodableRecord(f"{writer.name} record is incomplete: {exc!r}") from exc

    def _write(self, event: FulfillmentEvent, version: SchemaVersion) -> bytes:
        validate_event(event)
        stream = io.BytesIO()
        schemaless_writer(stream, self._parsed[version], _record_of(event))
        return stream.getvalue()

    async def fetch_schema(self, schema_id: int) -> None:
        """Fetch and keep the writer schema of a registry id (see `decode`).

        Raises UnknownSchema (the registry has no such id, or it is not one of our record schemas:
        the record is bad input), InfrastructureError (registry unreachable: try again later),
        ConfigurationError (the registry refuses us). Failures are not kept: asked again next time.
        """
        if schema_id in self._by_id:
            return
        if self._registry is None:
            raise UnknownSchema(_NO_REGISTRY.format(schema_id))
        definition = await self._registry.get_schema(schema_id)
        name = full_name(definition)
        kind = SCHEMA_KINDS.get(name)
        if kind is None:
            raise UnknownSchema(f"registry schema {schema_id} is {name!r}, not one of ours")
        try:
            parsed = parse_schema(dict(definition))
        except (SchemaParseException, UnknownType, ValueError, KeyError, TypeError) as exc:
            raise UnknownSchema(f"registry schema {schema_id} is not valid Avro: {exc}") from exc
        ours = self.store.matching(definition)
        self._by_id[schema_id] = _Writer(kind, name, ours.version if ours else None, parsed)

    async def decode_fetching(self, key: bytes | None, value: bytes | None) -> DecodedEvent:
        """`decode`, fetching a missing registry schema first (raises what both raise)."""
        try:
            return self.decode(key, value)
        except SchemaNotFetched as missing:
            await self.fetch_schema(missing.schema_id)
        return self.decode(key, value)

    def _registry_writer(self, schema_id: int) -> _Writer:
        cached = self._by_id.get(schema_id)
        if cached is not None:
            return cached
        if self._registry is None:
            raise UnknownSchema(_NO_REGISTRY.format(schema_id))
        raise SchemaNotFetched(schema_id)


@cache
def default_codec() -> EventCodec:
    """A registry-less codec over the shipped schemas, built on first use."""
    return EventCodec(SchemaStore.load_default())


def encode_single_object(event: FulfillmentEvent) -> bytes:
    """`EventCodec.encode_single_object` with the shipped schemas."""
    return default_codec().encode_single_object(event)


def encode_confluent(event: FulfillmentEvent, schema_id: int) -> bytes:
    """`EventCodec.encode_confluent` with the shipped schemas."""
    return default_codec().encode_confluent(event, schema_id)


def _parse_ours(version: SchemaVersion) -> Any:
    try:
        return parse_schema(dict(version.definition))
    except (SchemaParseException, UnknownType, ValueError, KeyError, TypeError) as exc:
        reason = f"{version.label} is not valid Avro: {exc}"
        raise ConfigurationError(reason, setting="schemas") from exc


def _check_key(key: bytes | None, order_id: str) -> None:
    if key is None:
        raise KeyMismatch("record has no key; it must be the orderId", field="key")
    try:
        text = key.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise KeyMismatch("record key is not UTF-8", field="key") from exc
    if text != order_id:
        reason = f"record key {text[:100]!r} != orderId {order_id[:100]!r}"
        raise KeyMismatch(reason, field="orderId")


def _record_of(event: FulfillmentEvent) -> dict[str, object]:
    # exact integer millis: no float rounding, no naive-datetime guessing inside fastavro
    return contract_fields(event, (event.occurred_at - _EPOCH) // _MILLISECOND)


def _event_from_record(kind: EventKind, record: Mapping[str, Any]) -> FulfillmentEvent:
    occurred_at = record["occurredAt"]
    if not isinstance(occurred_at, datetime):  # a registry writer schema without the logicalType
        occurred_at = _EPOCH + int(occurred_at) * _MILLISECOND
    items = tuple(LineQuantity(i["itemId"], i["quantity"]) for i in record["items"])
    common = (record["eventId"], record["orderId"], record["warehouseId"], occurred_at, items)
    if kind == "shipment":
        tracking = Tracking(
            record["trackingCompany"], record["trackingNumber"], record["trackingUrl"]
        )
        return ShipmentEvent(*common, tracking=tracking)
    return CancellationEvent(*common, reason=record["reason"])
