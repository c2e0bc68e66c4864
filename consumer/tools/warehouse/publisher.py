"""JSON lines -> validated, encoded events -> Kafka, keyed by order id.

The writer is handed in (`consumer.kafka.writer.RecordWriter` with an idempotent producer, built
by `warehouse.cli` and the demo), so tests can run the same code against the real broker or a
fake. Records of one order share a key, hence a
partition, and the idempotent producer keeps them in file order across retries.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from consumer.core.errors import BadInput
from consumer.core.events import FulfillmentEvent

EXIT_OK = 0
EXIT_BAD_LINES = 1
EXIT_DELIVERY_FAILED = 2


@dataclass(frozen=True, slots=True)
class SourceLine:
    """A valid event and the 1-based line it came from."""

    number: int
    event: FulfillmentEvent


@dataclass(frozen=True, slots=True)
class BadLine:
    """A line that is not produced: not UTF-8, not JSON, or not a valid event."""

    number: int
    reason: str


@dataclass(frozen=True, slots=True)
class DeliveryFailure:
    """A valid event the broker did not acknowledge."""

    number: int
    event_id: str
    order_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class PublishReport:
    """What happened to every line read. `read == delivered + len(bad_lines) + len(failures)`."""

    read: int
    delivered: int
    bad_lines: tuple[BadLine, ...]
    failures: tuple[DeliveryFailure, ...]

    @property
    def exit_code(self) -> int:
        """0 all delivered and no bad lines; 1 bad lines, every valid one delivered; 2 failures."""
        if self.failures:
            return EXIT_DELIVERY_FAILED
        return EXIT_BAD_LINES if self.bad_lines else EXIT_OK

    def summary(self) -> str:
        return (
            f"read {self.read}, delivered {self.delivered}, bad {len(self.bad_lines)}, "
            f"failed {len(self.failures)}"
        )


def read_lines(
    lines: Iterable[bytes], parse: Callable[[Any], FulfillmentEvent]
) -> Iterator[SourceLine | BadLine]:
    """Each non-blank line -> `SourceLine` or `BadLine`, lazily, numbered from 1.

    `parse` turns a decoded JSON value into an event (the codec's `event_from_json`) and raises
    `BadInput` for an invalid one. Blank lines are skipped but still counted in the numbering.
    """
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            yield BadLine(number, "not UTF-8")
            continue
        except json.JSONDecodeError as exc:
            yield BadLine(number, f"not JSON: {exc.msg} at column {exc.colno}")
            continue
        if not isinstance(obj, dict):
            yield BadLine(number, f"not a JSON object: {type(obj).__name__}")
            continue
        try:
            yield SourceLine(number, parse(obj))
        except BadInput as exc:
            yield BadLine(number, str(exc))


class Writer(Protocol):
    """The part of `consumer.kafka.writer.RecordWriter` the publisher uses."""

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: tuple[tuple[str, bytes], ...],
        on_done: Callable[[str | None], None],
    ) -> None: ...

    def poll(self, timeout: float = 0.0) -> None: ...

    def flush(self, timeout: float) -> int: ...


class Publisher:
    """Produces events to one topic, keyed by order id (UTF-8), and accounts for every one.

    `encode` turns an event into the record value (single-object or Confluent framing) and may
    raise `BadInput`; such an event becomes a bad line. `publish` blocks until every produced
    record is acknowledged or failed, or `flush_timeout` seconds pass (the rest count as failed).
    The writer belongs to the caller.
    """

    def __init__(
        self,
        writer: Writer,
        topic: str,
        encode: Callable[[FulfillmentEvent], bytes],
        *,
        flush_timeout: float = 60.0,
    ) -> None:
        self._writer = writer
        self._topic = topic
        self._encode = encode
        self._flush_timeout = flush_timeout

    def publish(self, lines: Iterable[SourceLine | BadLine]) -> PublishReport:
        """Produce every `SourceLine` in iteration order, count every `BadLine`, then flush.

        Consumes `lines` lazily (a file of any size streams through). Never raises for a record:
        encoding refusals become bad lines, refused records and negative delivery reports become
        failures. Returns once the flush ends.
        """
        read = delivered = 0
        bad: list[BadLine] = []
        failures: list[DeliveryFailure] = []
        pending: dict[int, SourceLine] = {}  # by read count: line numbers are the caller's

        def on_done_of(seq: int, line: SourceLine) -> Callable[[str | None], None]:
            def on_done(reason: str | None) -> None:
                nonlocal delivered
                pending.pop(seq, None)
                if reason is None:
                    delivered += 1
                else:
                    failures.append(_failure(line, reason))

            return on_done

        for line in lines:
            read += 1
            if isinstance(line, BadLine):
                bad.append(line)
                continue
            try:
                value = self._encode(line.event)
            except BadInput as exc:
                bad.append(BadLine(line.number, str(exc)))
                continue
            pending[read] = line
            key = line.event.order_id.encode("utf-8")
            # waits while the producer's queue is full; a refused record fails at once
            self._writer.produce(self._topic, key, value, (), on_done_of(read, line))
            self._writer.poll(0)

        self._writer.flush(self._flush_timeout)
        failures.extend(
            _failure(line, f"no acknowledgement within {self._flush_timeout:g}s (may be written)")
            for line in pending.values()
        )
        failures.sort(key=lambda failure: failure.number)
        return PublishReport(read, delivered, tuple(bad), tuple(failures))


def _failure(line: SourceLine, reason: str) -> DeliveryFailure:
    return DeliveryFailure(line.number, line.event.event_id, line.event.order_id, reason)
