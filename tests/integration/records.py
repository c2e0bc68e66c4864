"""Raw records in and out of the real broker, and the sandbox's admin surface, for failure tests.

Producing goes around the publisher on purpose (bad bytes, wrong keys, rule-breaking events);
reading takes a whole topic from the beginning to its end offsets. Every wait is bounded.
"""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx2
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    Message,
    Producer,
    TopicPartition,
)
from fastavro import parse_schema, schemaless_writer

from consumer.codec.avro import SINGLE_OBJECT_MAGIC, EventCodec, SchemaStore
from consumer.core.events import FulfillmentEvent, ShipmentEvent

Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class OutgoingRecord:
    key: bytes | None
    value: bytes
    headers: Headers = ()


@dataclass(frozen=True, slots=True)
class TopicRecord:
    """A record as the broker holds it."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode("utf-8", "replace")
        return None


@dataclass(frozen=True, slots=True)
class Placed:
    """Where a produced record landed."""

    partition: int
    offset: int


def codec() -> EventCodec:
    return EventCodec(SchemaStore.load_default())


def valid_record(event: FulfillmentEvent, headers: Headers = ()) -> OutgoingRecord:
    """An event as the publisher writes it: keyed by its order id, single-object encoded."""
    return OutgoingRecord(
        event.order_id.encode(), codec().encode_single_object(event), headers=headers
    )


def unvalidated_single_object(event: ShipmentEvent) -> bytes:
    """Single-object bytes of `event` written with fastavro directly: no contract rule checked."""
    version = codec().store.latest("shipment")
    stream = io.BytesIO()
    record: dict[str, object] = {
        "eventId": event.event_id,
        "orderId": event.order_id,
        "warehouseId": event.warehouse_id,
        "occurredAt": int(event.occurred_at.timestamp() * 1000),
        "items": [{"itemId": i.item_id, "quantity": i.quantity} for i in event.items],
        "trackingCompany": None,
        "trackingNumber": None,
        "trackingUrl": None,
    }
    schemaless_writer(stream, parse_schema(dict(version.definition)), record)
    return SINGLE_OBJECT_MAGIC + version.fingerprint + stream.getvalue()


def produce(bootstrap: str, topic: str, records: Sequence[OutgoingRecord]) -> list[Placed]:
    """Produce `records` in order (idempotent producer) and say where each one landed."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})
    placed: list[Placed | None] = [None] * len(records)
    errors: list[str] = []

    def delivered(index: int) -> Any:
        def report(err: KafkaError | None, msg: Message[Any, Any]) -> None:
            if err is not None:
                errors.append(str(err))
                return
            partition, offset = msg.partition(), msg.offset()
            assert partition is not None
            assert offset is not None
            placed[index] = Placed(partition, offset)

        return report

    for index, record in enumerate(records):
        producer.produce(
            topic,
            value=record.value,
            key=record.key,
            headers=list(record.headers),
            on_delivery=delivered(index),
        )
    remaining = producer.flush(30)
    assert remaining == 0, f"{remaining} records not delivered"
    assert not errors, errors
    done = [p for p in placed if p is not None]
    assert len(done) == len(records)
    return done


def read_topic(bootstrap: str, topic: str, timeout: float = 30) -> list[TopicRecord]:
    """Every record of `topic`, from the beginning to the end offsets seen now, per partition in
    offset order (partitions one after the other)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        partitions = sorted(metadata.partitions)
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions
        }
        wanted = {p for p, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in wanted])
        found: list[TopicRecord] = []
        deadline = time.monotonic() + timeout
        while wanted:
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out reading {topic}: partitions {wanted} unfinished")
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            error = msg.error()
            assert error is None, error
            record = _topic_record(msg)
            found.append(record)
            if record.offset >= ends[record.partition] - 1:
                wanted.discard(record.partition)
        return sorted(found, key=lambda r: (r.partition, r.offset))
    finally:
        consumer.close()


def _topic_record(msg: Message[Any, Any]) -> TopicRecord:
    partition, offset = msg.partition(), msg.offset()
    assert partition is not None
    assert offset is not None
    raw_headers: Any = msg.headers() or []  # the stubs allow a dict too; consumed: pairs
    headers = tuple(
        (str(k), v if isinstance(v, bytes) else (v or "").encode()) for k, v in raw_headers
    )
    return TopicRecord(partition, offset, msg.key(), msg.value(), headers)


def admin_get(sandbox_url: str, path: str, **params: str) -> Any:
    return httpx2.get(f"{sandbox_url}{path}", params=params, timeout=30).raise_for_status().json()


def sandbox_requests(sandbox_url: str, order_id: str | None = None) -> Iterator[dict[str, Any]]:
    """Every request the sandbox received (of one order: its POSTs), in arrival order."""
    after = 0
    while True:
        params = {"after": str(after)}
        if order_id is not None:
            params["orderId"] = order_id
        page: list[dict[str, Any]] = admin_get(sandbox_url, "/_admin/requests", **params)[
            "requests"
        ]
        if not page:
            return
        yield from page
        after = int(page[-1]["seq"])


def last_request_seq(sandbox_url: str) -> int:
    """The sequence number of the last request the sandbox received (0: none yet)."""
    return max((int(r["seq"]) for r in sandbox_requests(sandbox_url)), default=0)


def requests_after(sandbox_url: str, seq: int) -> list[dict[str, Any]]:
    """The requests the sandbox received after the one numbered `seq`, in arrival order."""
    return [r for r in sandbox_requests(sandbox_url) if int(r["seq"]) > seq]


def seed_orders(sandbox_url: str, orders: Iterable[tuple[str, dict[str, int]]]) -> None:
    """Seed orders `(order id, {item id: units ordered})` into a strict sandbox."""
    body = {
        "orders": [
            {
                "id": order_id,
                "items": [
                    {"id": item, "skuId": f"sku_{item}", "quantity": units}
                    for item, units in lines.items()
                ],
            }
            for order_id, lines in orders
        ]
    }
    httpx2.post(f"{sandbox_url}/_admin/orders", json=body, timeout=30).raise_for_status()
