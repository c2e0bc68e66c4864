"""`fulfillment-consumer redrive`: parked records back onto the input topic, in order. [io]

Contract: the parking topic is read from its beginning to the end offsets it had when the command
started; the records of the chosen order(s) (header `fc.park.order`) are republished, in parking
order, with their original key, value and headers (our `fc.` headers removed), by an idempotent
producer, to the input partition they came from (`fc.source.partition`; the key's partition if
that header is missing). A record parked twice (an earlier redrive parked again) is sent once.
The command returns after every record is acknowledged; any delivery failure exits 1.

What it does not do: a member keeps an order's parking in memory, per partition, until that
partition is reassigned or the member restarts; until then it parks the redriven records again.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import click
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, Producer
from confluent_kafka import TopicPartition as Tp
from rich.console import Console
from rich.table import Table

from consumer.cli import EnvCommand, kafka_options, kafka_passthrough
from consumer.config import passthrough_for
from consumer.deadletters import (
    REDRIVE_MARKER_HEADER,
    REDRIVEN_HEADER,
    Headers,
    header_value,
    redrive_marker_headers,
)

TIMEOUT = 15.0


@dataclass(frozen=True, slots=True)
class ParkedRecord:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers

    @property
    def order_id(self) -> str | None:
        return header_value(self.headers, "fc.park.order")

    @property
    def original_headers(self) -> Headers:
        return tuple((k, v) for k, v in self.headers if not k.startswith("fc."))

    def source_partition(self, topic: str) -> int | None:
        if header_value(self.headers, "fc.source.topic") != topic:
            return None
        found = header_value(self.headers, "fc.source.partition")
        return int(found) if found is not None and found.isdigit() else None


def select(records: Sequence[ParkedRecord], order_id: str | None) -> list[ParkedRecord]:
    """The records of `order_id` (every order if None) parked since its last redrive, in order,
    each event once. [pure]"""
    last_marker: dict[str, int] = {}
    for index, record in enumerate(records):
        marked = header_value(record.headers, REDRIVE_MARKER_HEADER)
        if marked is not None:
            last_marker[marked] = index
    seen: set[tuple[bytes | None, bytes | None]] = set()
    chosen: list[ParkedRecord] = []
    for index, record in enumerate(records):
        if record.order_id is None or index < last_marker.get(record.order_id, -1):
            continue  # a redrive marker, or redriven already
        if order_id is not None and record.order_id != order_id:
            continue
        if (record.key, record.value) in seen:
            continue
        seen.add((record.key, record.value))
        chosen.append(record)
    return chosen


def read_parked(config: dict[str, Any], topic: str) -> list[ParkedRecord]:
    """Every record of `topic` below the end offsets it has now, partition by partition."""
    consumer = Consumer(
        {
            **config,
            "group.id": "fc-redrive",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=TIMEOUT).topics.get(topic)
        if metadata is None or metadata.error is not None:
            raise click.ClickException(f"parking topic {topic} does not exist")
        found: list[ParkedRecord] = []
        for partition in sorted(metadata.partitions):
            found += _read_partition(consumer, topic, partition)
        return found
    finally:
        consumer.close()


def _read_partition(consumer: Consumer, topic: str, partition: int) -> list[ParkedRecord]:
    low, high = consumer.get_watermark_offsets(Tp(topic, partition), timeout=TIMEOUT)
    if high <= low:
        return []
    consumer.assign([Tp(topic, partition, OFFSET_BEGINNING)])
    records: list[ParkedRecord] = []
    position = low
    while position < high:
        batch = consumer.consume(500, TIMEOUT)
        if not batch:
            raise click.ClickException(f"{topic}[{partition}] stopped at {position} of {high}")
        for msg in batch:
            if msg.error() is not None:
                raise click.ClickException(f"reading {topic}: {msg.error()}")
            records.append(_parked(msg))
            position = int(msg.offset() or 0) + 1
    consumer.unassign()
    return [r for r in records if r.offset < high]


def _parked(msg: Message[Any, Any]) -> ParkedRecord:
    found = msg.headers() or []
    pairs = found.items() if isinstance(found, dict) else found
    headers = tuple((k, v if isinstance(v, bytes) else (v or "").encode()) for k, v in pairs)
    return ParkedRecord(
        int(msg.partition() or 0), int(msg.offset() or 0), msg.key(), msg.value(), headers
    )


def republish(config: dict[str, Any], topic: str, records: Sequence[ParkedRecord]) -> list[str]:
    """Produce `records` in order to `topic`; the delivery errors (empty when all landed)."""
    producer = Producer({**config, "enable.idempotence": True, "acks": "all"})
    errors: list[str] = []

    def delivered(err: KafkaError | None, _msg: Message[Any, Any]) -> None:
        if err is not None:
            errors.append(str(err))

    for record in records:
        target = record.source_partition(topic)
        producer.produce(
            topic,
            value=record.value,
            key=record.key,
            # marks the record as possibly applied already: the member reconciles before posting,
            # so running redrive twice cannot capture twice
            headers=[
                *record.original_headers,
                (REDRIVEN_HEADER, str(int(time.time() * 1000)).encode()),
            ],
            on_delivery=delivered,
            partition=-1 if target is None else target,  # -1: the key's partition
        )
    left = producer.flush(60)
    if left:
        errors.append(f"{left} record(s) not acknowledged within 60 s")
    return errors


def mark_redriven(
    config: dict[str, Any], parking_topic: str, topic: str, records: Sequence[ParkedRecord]
) -> list[str]:
    """After a successful republish: one marker per order and source partition in the parking
    topic (keyed by order id, like the parked records), so members stop treating the order as
    parked and the next redrive skips what was redriven."""
    producer = Producer({**config, "enable.idempotence": True, "acks": "all"})
    errors: list[str] = []

    def delivered(err: KafkaError | None, _msg: Message[Any, Any]) -> None:
        if err is not None:
            errors.append(str(err))

    marks = {(r.order_id, r.source_partition(topic)) for r in records if r.order_id is not None}
    for order, partition in sorted(marks, key=lambda m: (m[0] or "", m[1] or -1)):
        if order is None or partition is None:
            continue
        headers = redrive_marker_headers(order_id=order, topic=topic, partition=partition)
        producer.produce(
            parking_topic,
            key=order.encode(),
            value=None,
            headers=list(headers),
            on_delivery=delivered,
        )
    if producer.flush(60):
        errors.append("redrive markers not acknowledged within 60 s")
    return errors


@click.command("redrive", cls=EnvCommand)
@kafka_options
@click.option(
    "--parking-topic", envvar="PARKING_TOPIC", default=None, help="[default: <topic>.parked]"
)
@click.option("--order", "order_id", default=None, help="The order whose records to redrive.")
@click.option("--all", "redrive_all", is_flag=True, help="Every parked order.")
@click.option("--dry-run", is_flag=True, help="List what would be redriven, produce nothing.")
def redrive_command(
    *,
    bootstrap_servers: str,
    topic: str,
    parking_topic: str | None,
    order_id: str | None,
    redrive_all: bool,
    dry_run: bool,
) -> None:
    """Republish an order's parked records to the input topic, in their order.

    Run it once the cause is fixed. The records go back marked as redriven: the member owning
    the order's partition un-parks the order when the first of them arrives, and looks at
    Digital River before posting them, so nothing is applied twice. A marker in the parking
    topic records the redrive: members that take the partition over later do not treat the
    order as parked, and the next redrive skips what this one sent.
    """
    if (order_id is None) == (not redrive_all):
        raise click.UsageError("give either --order ORDER_ID or --all")
    config = {"bootstrap.servers": bootstrap_servers, **kafka_passthrough("reader")}
    plain = passthrough_for(config, "producer")
    parking = parking_topic or f"{topic}.parked"
    parked = select(read_parked(config, parking), order_id)
    console = Console()
    table = Table(title=f"redrive to {topic}" + (" (dry run)" if dry_run else ""))
    for column in ("order", "parked at", "source", "reason"):
        table.add_column(column)
    for r in parked:
        source = f"{header_value(r.headers, 'fc.source.partition')}@" + (
            header_value(r.headers, "fc.source.offset") or "?"
        )
        reason = header_value(r.headers, "fc.park.reason") or ""
        table.add_row(r.order_id or "?", f"{r.partition}@{r.offset}", source, reason)
    console.print(table)
    if dry_run or not parked:
        console.print(f"{len(parked)} record(s); nothing produced")
        return
    errors = republish(plain, topic, parked) or mark_redriven(plain, parking, topic, parked)
    if errors:
        click.echo(f"error: redrive incomplete: {'; '.join(errors)}", err=True)
        sys.exit(1)
    console.print(f"redrove {len(parked)} record(s) to {topic}")
