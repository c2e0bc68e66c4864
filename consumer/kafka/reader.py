"""Reading a topic's partitions to their end: the one loop every reader uses. [io]

The member restores its filters and parked orders from its side topics with it, `redrive` reads
the parking topic, `replay`'s preview the records a move would read again. The reading consumer
never joins a group and never commits.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from consumer.core.errors import InfrastructureError
from consumer.kafka.configs import reader_config
from consumer.kafka.records import SourceRecord, record_of

READER_GROUP = "fulfillment-consumer.reader"  # never joined, never committed
TIMEOUT = 120.0
_METADATA_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class OffsetRange:
    """Offsets [start, stop) of one partition."""

    partition: int
    start: int
    stop: int


def read_to_end(
    config: Mapping[str, Any],
    topic: str,
    each: Callable[[SourceRecord], None],
    *,
    partitions: Sequence[int] | None = None,
    since_ms: int | None = None,
    timeout: float = TIMEOUT,
) -> int:
    """Call `each(record)` for every record of `partitions` of `topic` (all when None), from the
    first still there (the first written at or after `since_ms`, when given) up to the end each
    had when called, in offset order per partition; the count read. A missing topic or
    partition reads nothing. Blocks up to about `timeout` s; raises InfrastructureError when
    the brokers fail or the end is not reached in time."""
    with _reader(config, topic) as reader:
        meta = reader.list_topics(topic, timeout=_METADATA_TIMEOUT).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            return 0
        wanted = sorted(meta.partitions) if partitions is None else partitions
        marks = {
            p: reader.get_watermark_offsets(TopicPartition(topic, p), timeout=_METADATA_TIMEOUT)
            for p in wanted
            if p in meta.partitions
        }
        begin = {p: low for p, (low, _) in marks.items()}
        if since_ms is not None and marks:
            found = reader.offsets_for_times(
                [TopicPartition(topic, p, since_ms) for p in marks], timeout=_METADATA_TIMEOUT
            )
            # -1: nothing that recent, so nothing to read
            begin = {
                t.partition: t.offset if t.offset >= 0 else marks[t.partition][1] for t in found
            }
        ranges = [OffsetRange(p, begin[p], high) for p, (_, high) in marks.items()]
        return _read(reader, topic, ranges, each, timeout)


def read_ranges(
    config: Mapping[str, Any],
    topic: str,
    ranges: Sequence[OffsetRange],
    each: Callable[[SourceRecord], None],
    *,
    timeout: float = TIMEOUT,
) -> int:
    """As `read_to_end`, for the given offset ranges (records no longer there are skipped)."""
    if all(r.start >= r.stop for r in ranges):
        return 0
    with _reader(config, topic) as reader:
        return _read(reader, topic, ranges, each, timeout)


@contextmanager
def _reader(config: Mapping[str, Any], topic: str) -> Iterator[Consumer]:
    """A reading consumer, closed after; a broker failure becomes an InfrastructureError."""
    try:
        consumer = Consumer({**reader_config(config, READER_GROUP), "enable.partition.eof": True})
    except KafkaException as exc:
        raise InfrastructureError(f"cannot create a reader of {topic}: {exc}") from exc
    try:
        yield consumer
    except KafkaException as exc:
        raise InfrastructureError(f"cannot read {topic}: {exc}") from exc
    finally:
        consumer.close()


def _read(
    reader: Consumer,
    topic: str,
    ranges: Sequence[OffsetRange],
    each: Callable[[SourceRecord], None],
    timeout: float,
) -> int:
    """The loop: assign every range, consume until each partition reached its stop or its end
    (partition EOF: what was below the stop has been read, markers and gaps included)."""
    stops = {r.partition: r.stop for r in ranges if r.start < r.stop}
    reader.assign(
        [TopicPartition(topic, r.partition, r.start) for r in ranges if r.partition in stops]
    )
    count = 0
    last_error: KafkaError | None = None
    deadline = time.monotonic() + timeout
    while stops and time.monotonic() < deadline:
        for msg in reader.consume(1000, 0.2):
            partition, error = msg.partition(), msg.error()
            if error is not None:
                if error.fatal():
                    raise InfrastructureError(f"cannot read {topic}: {error}")
                if error.code() == KafkaError._PARTITION_EOF and partition is not None:
                    stops.pop(partition, None)
                else:
                    last_error = error  # transient (librdkafka retries): said if time runs out
                continue
            if partition not in stops:
                continue
            record = record_of(msg)
            if record.offset < stops[record.partition]:
                each(record)
                count += 1
            if record.offset + 1 >= stops[record.partition]:
                del stops[record.partition]
    if stops:
        why = "" if last_error is None else f" (last error: {last_error})"
        raise InfrastructureError(
            f"could not read {topic} to its end within {timeout:g}s: partitions {sorted(stops)}"
            f" unfinished{why}"
        )
    return count
