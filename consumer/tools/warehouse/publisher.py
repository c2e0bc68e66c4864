"""JSON lines -> validated, encoded events -> Kafka, keyed by order id.

The producer is handed in (built by `warehouse.cli` with `enable.idempotence=true`, `acks=all`), so
tests run the same code against the real broker. Records of one order share a key, hence a
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


class Producer(Protocol):
    """The part of `confluent_kafka.Producer` the publisher uses."""

    def produce(
        self, topic: str, *, value: bytes, key: bytes, on_delivery: Callable[[Any, Any], None]
    ) -> None: ...

    def poll(self, timeout: float) -> int: ...

    def flush(self, timeout: float) -> int: ...


class Publisher:
    """Produces events to one topic, keyed by order id (UTF-8), and accounts for every one.

    `encode` turns an event into the record value (single-object or Confluent framing) and may
    raise `BadInput`; such an event becomes a bad line. `publish` blocks until every produced
    record is acknowledged or failed, or `flush_timeout` seconds pass (the rest count as failed).
    The producer is not closed; it belongs to the caller.
    """

    def __init__(
        self,
        producer: Producer,
        topic: str,
        encode: Callable[[FulfillmentEvent], bytes],
        *,
        flush_timeout: float = 60.0,
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._encode = encode
        self._flush_timeout = flush_timeout

    def publish(self, lines: Iterable[SourceLine | BadLine]) -> PublishReport:
        """Produce every `SourceLine` in iteration order, count every `BadLine`, then flush.

        Consumes `lines` lazily (a file of any size streams through). Never raises for a record:
        encoding refusals become bad lines, produce errors and negative delivery reports become
        failures. Returns once the flush ends.
        """
        read = delivered = 0
        bad: list[BadLine] = []
        failures: list[DeliveryFailure] = []
        pending: dict[int, SourceLine] = {}  # by read count: line numbers are the caller's

        def on_delivery_of(seq: int, line: SourceLine) -> Callable[[Any, Any], None]:
            def on_delivery(err: Any, _msg: Any) -> None:
                nonlocal delivered
                pending.pop(seq, None)
                if err is None:
                    delivered += 1
                else:
                    failures.append(_failure(line, str(err)))

            return on_delivery

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
            error = self._produce(key, value, on_delivery_of(read, line))
            if error is not None:
                pending.pop(read, None)
                failures.append(_failure(line, error))
            self._producer.poll(0)

        self._producer.flush(self._flush_timeout)
        failures.extend(
            _failure(line, f"no acknowledgement within {self._flush_timeout:g}s (may be written)")
            for line in pending.values()
        )
        failures.sort(key=lambda failure: failure.number)
        return PublishReport(read, delivered, tuple(bad), tuple(failures))

    def _produce(
        self, key: bytes, value: bytes, on_delivery: Callable[[Any, Any], None]
    ) -> str | None:
        """Produce one record, waiting while the local queue is full; an error message or None."""
        while True:
            try:
                self._producer.produce(self._topic, value=value, key=key, on_delivery=on_delivery)
            except BufferError:
                self._producer.poll(0.1)  # queue full: serve delivery reports, then try again
            except Exception as exc:  # KafkaException (size, ...); keeps this module Kafka-free
                return str(exc)
            else:
                return None


def _failure(line: SourceLine, reason: str) -> DeliveryFailure:
    return DeliveryFailure(line.number, line.event.event_id, line.event.order_id, reason)
