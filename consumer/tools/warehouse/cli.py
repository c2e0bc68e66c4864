"""`publish` and `simulate`: the warehouse side's commands. [wiring]

The only place in `warehouse/` where the Kafka producer, the schema registry client and the HTTP
client are built; everything below gets them handed in.
"""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, BinaryIO, TextIO, TypeVar

import click
import httpx2
from rich.console import Console
from rich.progress import Progress, TaskID

from consumer.codec.avro import EventCodec, SchemaStore, event_from_json
from consumer.config.registry import RegistrySettings
from consumer.config.settings import librdkafka_passthrough
from consumer.core.errors import FulfillmentConsumerError
from consumer.core.events import EventKind
from consumer.kafka.configs import cluster_config, producer_config
from consumer.kafka.schema_registry import SchemaRegistry
from consumer.kafka.writer import RecordWriter
from consumer.tools.registry_options import pop_registry_settings, schema_registry_options
from consumer.tools.warehouse.encoding import (
    SUBJECT_STRATEGIES,
    Encoder,
    SubjectStrategy,
    confluent_encoder,
    register_writer_schemas,
)
from consumer.tools.warehouse.publisher import (
    EXIT_DELIVERY_FAILED,
    BadLine,
    Publisher,
    PublishReport,
    SourceLine,
    read_lines,
)
from consumer.tools.warehouse.simulator import seed_sandbox, simulate, to_json_lines

T = TypeVar("T")

EXIT_STATUS = """\b
Exit status:
  0  every line was a valid event and was delivered
  1  some lines were bad (reported on stderr with line number and reason, not produced);
     every valid one was delivered
  2  some valid events were not delivered, or nothing could be published
     (librdkafka or the schema registry refused the settings)
Other KAFKA_* variables go to librdkafka: KAFKA_SECURITY_PROTOCOL -> security.protocol.
"""


@dataclass(frozen=True, slots=True)
class PublishOptions:
    """The options `publish` and `simulate --publish` share."""

    bootstrap_servers: str
    topic: str
    schema_registry: RegistrySettings | None
    subject_strategy: SubjectStrategy
    flush_timeout: float
    progress: bool | None


_PUBLISH_OPTIONS = (
    click.option("--bootstrap-servers", envvar="KAFKA_BOOTSTRAP_SERVERS", default="127.0.0.1:9092",
                 show_default=True, show_envvar=True, help="Kafka brokers."),
    click.option("--topic", envvar="FULFILLMENT_TOPIC", default="warehouse.fulfillment-events",
                 show_default=True, show_envvar=True, help="Topic to produce to."),
    click.option("--subject-strategy", type=click.Choice(SUBJECT_STRATEGIES), default="topic",
                 show_default=True, help="Registry subjects: topic = <topic>-value (both "
                 "record types in one subject: needs compatibility NONE there), topic-record = "
                 "<topic>-<record name>, record = <record name>."),
    click.option("--flush-timeout", type=click.FloatRange(min=0), default=60.0, show_default=True,
                 help="Seconds to wait at the end for the broker's acknowledgements."),
    click.option("--progress/--no-progress", default=None,
                 help="Progress bar on stderr [default: when stderr is a terminal]."),
)  # fmt: skip


def publish_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the shared publishing options to a click command (registry ones too: without
    SCHEMA_REGISTRY_URL, Avro single-object encoding and no registry)."""
    for option in reversed(_PUBLISH_OPTIONS):
        command = option(command)
    return schema_registry_options(command)


def _publish_options(options: dict[str, Any]) -> PublishOptions:
    try:
        registry = pop_registry_settings(options)
    except FulfillmentConsumerError as exc:
        raise click.UsageError(f"configuration: {exc}") from None
    return PublishOptions(schema_registry=registry, **options)


@click.command("publish", epilog=EXIT_STATUS)
@click.argument("source", type=click.File("rb"), default="-")
@publish_options
def publish_command(source: BinaryIO, **options: Any) -> None:
    """Publish the JSON lines of SOURCE (a file; - or nothing for stdin) as fulfillment events.

    One event per line, in the Avro field names plus "type" ("shipment" or "cancellation"):

    \b
    {"type": "shipment", "eventId": "3f1c...", "orderId": "ord_1", "warehouseId": "wh_1",
     "occurredAt": "2025-01-01T12:00:00.000Z", "items": [{"itemId": "itm_1", "quantity": 2}],
     "trackingCompany": "UPS", "trackingNumber": "1Z...", "trackingUrl": null}

    Each valid event is produced keyed by its orderId with an idempotent producer (acks=all), so
    the events of one order land in one partition in file order.
    """
    settings = _publish_options(options)
    console = Console(stderr=True)
    size = _file_size(source)
    show = settings.progress if settings.progress is not None else console.is_terminal
    with _progress(console, show) as progress:
        raw: Iterable[bytes] = source
        if progress is not None:
            task = progress.add_task("publishing", total=size)  # None: a pulsing bar (stdin)
            raw = _advancing(progress, task, source, len)
        report = run_publish(settings, read_lines(raw, event_from_json), console)
    sys.exit(report.exit_code)


@click.command("simulate", epilog=EXIT_STATUS)
@click.option("--orders", type=click.IntRange(min=0), default=100, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True, help="Same seed, same events.")
@click.option(
    "--partial-rate",
    type=click.FloatRange(0, 1),
    default=0.15,
    show_default=True,
    help="Share of orders left partly fulfilled.",
)
@click.option("--sandbox-url", help="Seed the orders into this sandbox (POST /_admin/orders).")
@click.option(
    "--out",
    type=click.File("w"),
    help="Write the events as JSON lines here (- for stdout) [default: stdout, unless --publish].",
)
@click.option("--publish", "publish_events", is_flag=True, help="Produce the events to Kafka.")
@publish_options
def simulate_command(
    *, orders: int, seed: int, partial_rate: float, sandbox_url: str | None,
    out: TextIO | None, publish_events: bool, **options: Any,
) -> None:  # fmt: skip
    """Simulate a warehouse: orders, then their shipments and cancellations, from a seed.

    Seeds the orders into the sandbox (--sandbox-url), writes the events as JSON lines in the
    format `publish` reads (--out), and/or publishes them (--publish, with the options below).
    """
    settings = _publish_options(options)
    console = Console(stderr=True)
    simulation = simulate(orders, seed, partial_rate=partial_rate)
    _say(console, f"simulated {len(simulation.orders)} orders, {len(simulation.events)} events")
    if sandbox_url:
        with httpx2.Client(timeout=30.0) as client:
            try:
                seeded = seed_sandbox(sandbox_url, simulation, client)
            except FulfillmentConsumerError as exc:
                raise click.ClickException(str(exc)) from exc
        _say(console, f"seeded {seeded} orders at {sandbox_url}")
    if out is None and not publish_events:
        out = sys.stdout
    if out is not None:
        out.writelines(line + "\n" for line in to_json_lines(simulation.events))
        out.flush()
    if publish_events:
        lines = [SourceLine(number, event) for number, event in enumerate(simulation.events, 1)]
        show = settings.progress if settings.progress is not None else console.is_terminal
        with _progress(console, show) as progress:
            items: Iterable[SourceLine | BadLine] = lines
            if progress is not None:
                task = progress.add_task("publishing", total=len(lines))
                items = _advancing(progress, task, lines, lambda _: 1)
            report = run_publish(settings, items, console)
        sys.exit(report.exit_code)


def run_publish(
    settings: PublishOptions, lines: Iterable[SourceLine | BadLine], console: Console
) -> PublishReport:
    """Build producer and encoder, publish `lines`, report each bad line and failure on
    `console`, then the summary. Exits with status 2 if the settings are refused."""
    codec = EventCodec(SchemaStore.load_default())
    try:
        # refuses (ConfigurationError) the keys ordering depends on: idempotence, acks
        cluster = cluster_config(settings.bootstrap_servers, librdkafka_passthrough(os.environ))
        writer = RecordWriter(producer_config(cluster, logs=False))  # InfrastructureError
        encode: Encoder = codec.encode_single_object
        if settings.schema_registry is not None:
            ids = asyncio.run(_register(codec, settings.schema_registry, settings))
            encode = confluent_encoder(codec, ids)
    except FulfillmentConsumerError as exc:
        _say(console, f"error: nothing published: {exc}")
        sys.exit(EXIT_DELIVERY_FAILED)

    def reporting(items: Iterable[SourceLine | BadLine]) -> Iterator[SourceLine | BadLine]:
        for item in items:
            if isinstance(item, BadLine):
                _say(console, f"line {item.number}: bad: {item.reason}")
            yield item

    publisher = Publisher(writer, settings.topic, encode, flush_timeout=settings.flush_timeout)
    report = publisher.publish(reporting(lines))
    for failure in report.failures:
        _say(console, f"line {failure.number}: not delivered (order {failure.order_id}, "
                      f"event {failure.event_id}): {failure.reason}")  # fmt: skip
    _say(console, f"{settings.topic}: {report.summary()}")
    return report


async def _register(
    codec: EventCodec, registry_settings: RegistrySettings, settings: PublishOptions
) -> dict[EventKind, int]:
    """Up front, before anything is produced (the client retries a flaky registry a few times)."""
    async with SchemaRegistry(registry_settings, max_retries=2) as registry:
        return await register_writer_schemas(
            codec, registry, settings.topic, settings.subject_strategy
        )


def _say(console: Console, text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _progress(console: Console, show: bool) -> AbstractContextManager[Progress | None]:
    """A rich progress bar on stderr, or None when it is off."""
    return Progress(console=console) if show else nullcontext(None)


def _advancing(
    progress: Progress, task: TaskID, items: Iterable[T], size: Callable[[T], int]
) -> Iterator[T]:
    for item in items:
        yield item
        progress.advance(task, size(item))


def _file_size(source: BinaryIO) -> int | None:
    """Bytes in a regular file; None for stdin, pipes and the like."""
    try:
        info = os.fstat(source.fileno())
    except (OSError, ValueError, AttributeError):
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None
