"""`replay` without `--execute`, with Digital River options: what the replay would post. [io]

For each partition, members started after the move read [new offset, end): the records below the
old committed offset again, and those not yet committed. The preview reads those records with a
consumer that never joins the group and never commits, decodes them (bad input: would be
dead-lettered, never posted), and asks Digital River, order by order, which of their event ids
its fulfillments' metadata already names (`reconcile.split_applied`, as the engine does before
posting). Nothing is posted and no offset moves. The work is bounded: `--max-records` refuses
larger previews.

Errors are ours (a bad Digital River option: ConfigurationError; Kafka, the registry:
InfrastructureError; Digital River unavailable: RetryableFailure; too many records:
PreviewTooLarge); `replay` turns them into its exit codes.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from consumer.codec.avro import EventCodec, default_codec
from consumer.config.settings import Secret, check_dr_url, read_api_key
from consumer.core.errors import (
    BadInput,
    ConfigurationError,
    FulfillmentConsumerError,
    InfrastructureError,
    RetryableFailure,
)
from consumer.core.lanes import PendingEvent
from consumer.core.reconcile import split_applied
from consumer.digitalriver.client import DigitalRiverClient
from consumer.kafka.reader import OffsetRange, read_ranges
from consumer.kafka.records import SourceRecord

CONCURRENCY = 16
ATTEMPTS = 4
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class DrTarget:
    """Validated Digital River options of a preview."""

    url: str
    key: Secret = field(repr=False)


def dr_target(
    url: str | None, key: str | None, key_file: str | None, *, allow_insecure_http: bool
) -> DrTarget | None:
    """None without --dr-api-url; a bad value raises ConfigurationError naming the setting."""
    if url is None:
        if key or key_file:
            raise ConfigurationError(
                "a preview against Digital River needs its URL too", setting="DR_API_URL"
            )
        return None
    checked = check_dr_url(url, allow_insecure_http=allow_insecure_http)
    return DrTarget(checked, read_api_key(key, key_file))


@dataclass(frozen=True, slots=True)
class Span:
    """Offsets [start, stop) of one partition the group would read; below `committed` again."""

    partition: int
    start: int
    stop: int
    committed: int | None

    @property
    def size(self) -> int:
        return max(0, self.stop - self.start)


@dataclass(slots=True)
class PartitionPreview:
    partition: int
    start: int
    stop: int
    records: int = 0
    reread: int = 0  # of `records`, those below the old committed offset
    already_applied: int = 0
    would_post: int = 0
    bad_records: int = 0


class PreviewTooLarge(FulfillmentConsumerError):
    """The preview would read more records than --max-records allows."""


def check_bound(spans: Sequence[Span], max_records: int) -> None:
    total = sum(s.size for s in spans)
    if total > max_records:
        raise PreviewTooLarge(
            f"the preview would read {total} records, more than --max-records {max_records}; "
            "narrow it with --partitions or a later target, or raise --max-records"
        )


def read_records(
    config: Mapping[str, Any], topic: str, spans: Sequence[Span]
) -> list[SourceRecord]:
    """Every record of `spans`, by a consumer that assigns partitions and never commits; a
    bound on the time it takes that grows with their size (InfrastructureError past it)."""
    found: list[SourceRecord] = []
    ranges = [OffsetRange(s.partition, s.start, s.stop) for s in spans]
    limit = 30.0 + sum(s.size for s in spans) / 2000
    read_ranges(config, topic, ranges, found.append, timeout=limit)
    return found


async def _retrying(call: Callable[[], Awaitable[T]]) -> T:
    for attempt in range(ATTEMPTS):
        try:
            return await call()
        except RetryableFailure as exc:
            if attempt == ATTEMPTS - 1:
                raise
            await asyncio.sleep(min(exc.retry_after or 0.5 * 2**attempt, 5.0))
    raise AssertionError("unreachable")


async def applied_ids(target: DrTarget, orders: Mapping[str, Sequence[PendingEvent]]) -> set[str]:
    """The ids among `orders`' events that Digital River's fulfillments already name."""
    client = DigitalRiverClient(target.url, target.key, max_connections=CONCURRENCY)
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(order_id: str, pending: Sequence[PendingEvent]) -> set[str]:
        async with gate:
            found = await _retrying(lambda: client.list_fulfillments(order_id))
        return {entry.event.event_id for entry in split_applied(pending, found).applied}

    try:
        results = await asyncio.gather(
            *(one(o, p) for o, p in orders.items()), return_exceptions=True
        )
    finally:
        await client.aclose()
    applied: set[str] = set()
    for result in results:
        if isinstance(result, BaseException):
            raise result
        applied |= result
    return applied


@dataclass(frozen=True, slots=True)
class Preview:
    partitions: tuple[PartitionPreview, ...]
    orders_to_post: dict[str, list[str]]  # order id -> event ids Digital River does not have

    def totals(self) -> dict[str, int]:
        keys = ("records", "reread", "already_applied", "would_post", "bad_records")
        return {k: sum(getattr(p, k) for p in self.partitions) for k in keys}

    def as_json(self) -> dict[str, object]:
        return {
            "partitions": [asdict(p) for p in self.partitions],
            "totals": self.totals(),
            "orders_to_post": [
                {"order_id": o, "event_ids": ids} for o, ids in sorted(self.orders_to_post.items())
            ],
        }


def preview(
    config: Mapping[str, Any],
    topic: str,
    spans: Sequence[Span],
    target: DrTarget,
    codec: EventCodec,
) -> Preview:
    """Read, decode and look up the spans' records (see the module docstring)."""
    parts = {
        s.partition: PartitionPreview(s.partition, s.start, max(s.start, s.stop)) for s in spans
    }
    by_order: dict[str, list[PendingEvent]] = defaultdict(list)
    partition_of: dict[str, int] = {}
    committed = {s.partition: s.committed for s in spans}
    for record in read_records(config, topic, spans):
        part = parts[record.partition]
        part.records += 1
        if record.offset < (committed.get(record.partition) or 0):
            part.reread += 1
        try:
            event = codec.decode(record.key, record.value).event
        except BadInput:
            part.bad_records += 1
            continue
        except InfrastructureError as exc:
            raise InfrastructureError(f"cannot decode records: {exc}") from exc
        by_order[event.order_id].append(PendingEvent(record.offset, event))
        partition_of[event.order_id] = record.partition
    applied = asyncio.run(applied_ids(target, by_order))  # ConfigurationError, RetryableFailure
    to_post: dict[str, list[str]] = {}
    for order_id, pending in by_order.items():
        part = parts[partition_of[order_id]]
        for entry in pending:
            if entry.event.event_id in applied:
                part.already_applied += 1
            else:
                part.would_post += 1
                to_post.setdefault(order_id, []).append(entry.event.event_id)
    return Preview(tuple(parts[p] for p in sorted(parts)), to_post)


def render(console: Console, title: str, result: Preview, *, verbose: bool) -> None:
    table = Table(title=title)
    columns = ("partition", "offsets", "records", "re-read", "DR has", "to post", "bad")
    for column in columns:
        table.add_column(column, justify="right")
    for p in result.partitions:
        row = (p.partition, f"{p.start}-{p.stop}", p.records, p.reread, p.already_applied)
        table.add_row(*map(str, (*row, p.would_post, p.bad_records)))
    totals = result.totals()
    table.add_row("total", "", *(str(v) for v in totals.values()))
    console.print(table)
    if verbose and result.orders_to_post:
        console.print("orders with events that would be posted:")
        for order_id, ids in sorted(result.orders_to_post.items()):
            console.print(f"  {order_id}: {len(ids)} event(s): {', '.join(ids)}", soft_wrap=True)
    console.print(
        "dry run: nothing committed, nothing posted. re-read: below the old commit; DR has: "
        "events Digital River already has (settled without a POST); to post: events it does not "
        "have; bad: records that would be dead-lettered."
    )


def emit_json(document: Mapping[str, object]) -> None:
    click.echo(json.dumps(document, indent=2, sort_keys=True))


@dataclass(frozen=True, slots=True)
class PreviewRequest:
    """A dry run's validated output options; `target` None keeps the dry run of old."""

    target: DrTarget | None
    max_records: int
    verbose: bool
    as_json: bool


def preview_request(options: Mapping[str, Any]) -> PreviewRequest:
    """From `preview_options`' values; a bad Digital River option raises ConfigurationError
    naming its setting."""
    target = dr_target(
        options["dr_api_url"],
        options["dr_api_key"],
        options["dr_api_key_file"],
        allow_insecure_http=bool(options["allow_insecure_http"]),
    )
    verbose, as_json = bool(options["verbose"]), bool(options["as_json"])
    return PreviewRequest(target, int(options["max_records"]), verbose, as_json)


def report_dry_run(
    console: Console,
    request: PreviewRequest,
    *,
    config: Mapping[str, Any],
    topic: str,
    document: Mapping[str, object],
    spans: Sequence[Span],
) -> None:
    """Print the dry run: the note of old, or the preview when Digital River was named."""
    target = request.target
    if target is None:
        if request.as_json:
            emit_json({**document, "preview": None})
        else:
            console.print(
                "plan only: nothing committed (add --execute to commit). Records in "
                "[new, horizon) are reconciled with Digital River at runtime before any POST."
            )
        return
    check_bound(spans, request.max_records)
    found = preview(config, topic, spans, target, default_codec())
    if request.as_json:
        emit_json({**document, "preview": found.as_json()})
    else:
        title = f"what the replay would do at {target.url}"
        render(console, title, found, verbose=request.verbose)


def preview_options(fn: Any) -> Any:
    """The dry-run preview's options (Digital River's as in `run`, same environment names)."""
    for option in reversed(
        (
            click.option("--dr-api-url", envvar="DR_API_URL", default=None, help=_URL_HELP),
            click.option("--dr-api-key", envvar="DR_API_KEY", default=None, help="Secret key."),
            click.option("--dr-api-key-file", envvar="DR_API_KEY_FILE", default=None),
            click.option(
                "--dr-allow-insecure-http",
                "--allow-insecure-http",
                "allow_insecure_http",
                envvar="DR_ALLOW_INSECURE_HTTP",
                is_flag=True,
            ),
            click.option(
                "--max-records", type=click.IntRange(min=0), default=100_000, show_default=True
            ),
            click.option("--verbose", is_flag=True, help="List the orders that would be posted."),
            click.option("--json", "as_json", is_flag=True, help="JSON instead of tables."),
        )
    ):
        fn = option(fn)
    return fn


_URL_HELP = "Without --execute: ask this Digital River which replayed events it already has."
