"""`fulfillment-consumer redrive`: parked records back onto the input topic, in order. [io]

Contract: the parking topic is read from its beginning to the end offsets it had when the command
started; the records of the chosen order(s) (header `fc.park.order`) parked after the order's
last redrive (`fc.redrive.through` of its marker) are republished in the order's own event order
(`fc.order.position`, the input offset where each event was first read), with their original
key, value and headers (our `fc.` headers removed), by an idempotent producer, to the input
partition they came from (`fc.source.partition`; the key's partition if that header is missing).
A record parked twice is sent once. Each redriven record says how far this redrive read the
parking topic (`fc.redrive.through`); the first of each order also says it is the first
(`fc.redrive.first`): the member unparks the order on that record only, and only when nothing
of the order was parked after that point (what was is redriven next time, in its place). After
every record is acknowledged a marker per order goes to the parking partition of the source
partition, naming `through` and where the first redriven record landed (`fc.redrive.landed`),
so a member that takes the partition over keeps the order parked until it has read that record.
Any delivery failure exits 1.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from consumer.core.deadletters import (
    POSITION_HEADER,
    REDRIVE_FIRST_HEADER,
    REDRIVE_MARKER_HEADER,
    REDRIVE_POSITION_HEADER,
    REDRIVE_THROUGH_HEADER,
    REDRIVEN_HEADER,
    Headers,
    header_value,
    redrive_marker_headers,
)
from consumer.core.errors import InfrastructureError
from consumer.kafka.admin import topic_partition_count
from consumer.kafka.configs import producer_config
from consumer.kafka.reader import read_to_end
from consumer.kafka.records import SourceRecord
from consumer.kafka.writer import RecordWriter
from consumer.tools.options import (
    EnvCommand,
    infrastructure_errors_reported,
    kafka_cluster,
    kafka_options,
)


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

    @property
    def position(self) -> int:
        """The event's place in its order: the input offset where it was first read."""
        for name in (POSITION_HEADER, "fc.source.offset"):
            found = header_value(self.headers, name)
            if found is not None and found.isdigit():
                return int(found)
        return -1

    def source_partition(self, topic: str) -> int | None:
        if header_value(self.headers, "fc.source.topic") != topic:
            return None
        found = header_value(self.headers, "fc.source.partition")
        return int(found) if found is not None and found.isdigit() else None


def select(records: Sequence[ParkedRecord], order_id: str | None) -> list[ParkedRecord]:
    """The records of `order_id` (every order if None) parked after its last redrive, each
    event once, in the order's event order. [pure]

    "After its last redrive": a record of the order in the same parking partition above the
    `fc.redrive.through` offset of the order's latest marker there (a marker without it, from
    an older version, covers what precedes it). A record parked while a redrive ran, or after
    it read the parking topic, is therefore still chosen."""
    covered: dict[tuple[str, int], int] = {}
    for record in records:
        marked = header_value(record.headers, REDRIVE_MARKER_HEADER)
        if marked is not None:
            through = header_value(record.headers, REDRIVE_THROUGH_HEADER)
            upto = int(through) if through is not None and through.isdigit() else record.offset
            key = (marked, record.partition)
            covered[key] = max(covered.get(key, -1), upto)
    seen: set[tuple[bytes | None, bytes | None]] = set()
    chosen: list[ParkedRecord] = []
    for record in records:
        order = record.order_id
        if order is None or record.offset <= covered.get((order, record.partition), -1):
            continue  # a redrive marker, or redriven already
        if order_id is not None and order != order_id:
            continue
        if (record.key, record.value) in seen:
            continue
        seen.add((record.key, record.value))
        chosen.append(record)
    # stable: an order's events by their first input offset; orders keep their first appearance
    first: dict[str | None, int] = {}
    for index, record in enumerate(chosen):
        first.setdefault(record.order_id, index)
    return sorted(chosen, key=lambda r: (first[r.order_id], r.position))


def read_through(records: Sequence[ParkedRecord]) -> dict[int, int]:
    """Per parking partition, the highest offset read: how far this redrive saw. [pure]"""
    through: dict[int, int] = {}
    for record in records:
        through[record.partition] = max(through.get(record.partition, -1), record.offset)
    return through


def read_parked(config: Mapping[str, Any], topic: str) -> list[ParkedRecord]:
    """Every record of `topic` below the end offsets it has now, partition by partition.
    Raises InfrastructureError when the topic is missing or cannot be read."""
    if topic_partition_count(config, topic) == 0:
        raise InfrastructureError(f"parking topic {topic} does not exist")
    found: list[ParkedRecord] = []
    read_to_end(config, topic, lambda r: found.append(_parked(r)))
    return sorted(found, key=lambda r: (r.partition, r.offset))


def _parked(record: SourceRecord) -> ParkedRecord:
    return ParkedRecord(record.partition, record.offset, record.key, record.value, record.headers)


Landed = dict[tuple[str, int], int]
"""(order id, input partition) -> input offset of the order's first redriven record."""


def redriven_headers(record: ParkedRecord, *, through: int, first: bool) -> Headers:
    """The original headers plus ours: redriven (reconcile first), how far this redrive read the
    parking topic, the event's place in its order, and the first-of-its-order mark. [pure]"""
    own: Headers = (
        (REDRIVEN_HEADER, str(int(time.time() * 1000)).encode()),
        (REDRIVE_THROUGH_HEADER, str(through).encode()),
        (REDRIVE_POSITION_HEADER, str(record.position).encode()),
    )
    if first:
        own += ((REDRIVE_FIRST_HEADER, b"1"),)
    return record.original_headers + own


def republish(
    config: Mapping[str, Any],
    topic: str,
    records: Sequence[ParkedRecord],
    through: dict[int, int],
) -> tuple[list[str], Landed]:
    """Produce `records` in order to `topic` with an idempotent producer; the delivery errors
    (empty when all landed) and where each order's first record landed."""
    writer = RecordWriter(producer_config(config, logs=False))
    errors: list[str] = []
    landed: Landed = {}

    def landing(order: str | None, partition: int | None) -> Callable[[int], None] | None:
        if order is None or partition is None:
            return None  # no marker names it (mark_redriven)

        def at(offset: int) -> None:
            landed[(order, partition)] = min(landed.get((order, partition), offset), offset)

        return at

    started: set[str] = set()
    for record in records:
        target = record.source_partition(topic)
        first = record.order_id is not None and record.order_id not in started
        started.add(record.order_id or "")
        writer.produce(
            topic,
            record.key,
            record.value,
            # marks the record as possibly applied already: the member reconciles before posting,
            # so running redrive twice cannot capture twice
            redriven_headers(record, through=through.get(record.partition, -1), first=first),
            _collect(errors),
            partition=target,  # None: the key's partition
            landed=landing(record.order_id, target),
        )
    left = writer.flush(60)
    if left:
        errors.append(f"{left} record(s) not acknowledged within 60 s")
    return errors, landed


def mark_redriven(
    config: Mapping[str, Any],
    parking_topic: str,
    topic: str,
    records: Sequence[ParkedRecord],
    *,
    through: dict[int, int],
    landed: Landed,
) -> list[str]:
    """After a successful republish: one marker per order and source partition, in the parking
    partition of that source partition, saying how far this redrive read and where the order's
    first redriven record landed (parked_orders and select read them)."""
    writer = RecordWriter(producer_config(config, logs=False))
    errors: list[str] = []
    marks: dict[tuple[str, int], int] = {}
    for r in records:
        partition = r.source_partition(topic)
        if r.order_id is None or partition is None:
            continue
        key = (r.order_id, partition)
        marks[key] = max(marks.get(key, -1), through.get(r.partition, -1))
    for (order, partition), upto in sorted(marks.items()):
        headers = redrive_marker_headers(
            order_id=order,
            topic=topic,
            partition=partition,
            through=upto,
            landed=landed.get((order, partition)),
        )
        writer.produce(
            parking_topic, order.encode(), None, headers, _collect(errors), partition=partition
        )
    if writer.flush(60):
        errors.append("redrive markers not acknowledged within 60 s")
    return errors


def _collect(errors: list[str]) -> Callable[[str | None], None]:
    def done(reason: str | None) -> None:
        if reason is not None:
            errors.append(reason)

    return done


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
    config = kafka_cluster(bootstrap_servers)
    parking = parking_topic or f"{topic}.parked"
    with infrastructure_errors_reported():
        _redrive(config, topic, parking, order_id, dry_run=dry_run)


def _redrive(
    config: Mapping[str, Any], topic: str, parking: str, order_id: str | None, *, dry_run: bool
) -> None:
    everything = read_parked(config, parking)
    parked = select(everything, order_id)
    through = read_through(everything)
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
    errors, landed = republish(config, topic, parked, through)
    errors = errors or mark_redriven(config, parking, topic, parked, through=through, landed=landed)
    if errors:
        click.echo(f"error: redrive incomplete: {'; '.join(errors)}", err=True)
        sys.exit(1)
    console.print(f"redrove {len(parked)} record(s) to {topic}")
