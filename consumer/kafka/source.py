"""A group member's consumer: subscribe, consume, pause/resume, commit. [io]

Translates confluent-kafka's messages, partitions and errors into ours. Nothing here decides
anything: the engine says what to consume, commit, pause and resume.

Threading: every method of `KafkaSource` must be called from one thread (the engine's Kafka
thread, `thread.KafkaThread`); the rebalance callbacks it is given run on that thread, inside
`consume()`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from consumer.core.coordinator_retry import COORDINATOR_ATTEMPTS, CoordinatorRetry
from consumer.core.errors import InfrastructureError
from consumer.kafka.coordinator import ride_out
from consumer.kafka.records import Committed, SourceRecord, record_of

PartitionsCallback = Callable[[list[int]], None]


class KafkaSource:
    """A group member's consumer: subscribe, consume, pause/resume, commit."""

    def __init__(self, config: Mapping[str, Any], topic: str) -> None:
        self._topic = topic
        try:
            self._consumer = Consumer(dict(config))
        except KafkaException as exc:
            raise InfrastructureError(f"cannot create the Kafka consumer: {exc}") from exc

    @property
    def topic(self) -> str:
        return self._topic

    def subscribe(
        self,
        on_assign: PartitionsCallback,
        on_revoke: PartitionsCallback,
        on_lost: PartitionsCallback,
    ) -> None:
        def wrap(callback: PartitionsCallback) -> Callable[[Consumer, list[TopicPartition]], None]:
            return lambda _consumer, parts: callback([p.partition for p in parts])

        self._consumer.subscribe(
            [self._topic],
            on_assign=wrap(on_assign),
            on_revoke=wrap(on_revoke),
            on_lost=wrap(on_lost),
        )

    def consume(self, max_records: int, timeout: float) -> list[SourceRecord]:
        """Up to `max_records`; rebalance callbacks run inside this call. Fatal errors raise."""
        records: list[SourceRecord] = []
        for msg in self._consumer.consume(max_records, timeout):
            error = msg.error()
            if error is not None:
                _raise_if_fatal(error)
                continue
            records.append(record_of(msg))
        return records

    def committed(
        self, partitions: Sequence[int], timeout: float = 10.0, attempts: int = COORDINATOR_ATTEMPTS
    ) -> list[Committed]:
        """Committed offsets and metadata; up to `attempts` calls while the group coordinator
        moves or loads (`CoordinatorRetry`). Raises InfrastructureError."""
        tps = [TopicPartition(self._topic, p) for p in partitions]
        found = ride_out(
            lambda: self._consumer.committed(tps, timeout=timeout),
            "read committed offsets",
            CoordinatorRetry(attempts=attempts),
        )
        return [
            Committed(tp.partition, None if tp.offset < 0 else tp.offset, tp.metadata)
            for tp in found
        ]

    def end_offsets(self, partitions: Sequence[int], timeout: float = 10.0) -> dict[int, int]:
        """The high watermark of each partition (the offset the next produced record gets)."""
        ends: dict[int, int] = {}
        for p in partitions:
            try:
                _low, high = self._consumer.get_watermark_offsets(
                    TopicPartition(self._topic, p), timeout=timeout
                )
            except KafkaException as exc:
                raise InfrastructureError(
                    f"cannot read the end offset of partition {p}: {exc}"
                ) from exc
            ends[p] = int(high)
        return ends

    def cached_end_offsets(self, partitions: Sequence[int]) -> dict[int, int]:
        """End offsets as last seen by fetches (no broker round trip); missing when unknown."""
        ends: dict[int, int] = {}
        for p in partitions:
            with contextlib.suppress(KafkaException):
                _low, high = self._consumer.get_watermark_offsets(
                    TopicPartition(self._topic, p), cached=True
                )
                if high >= 0:
                    ends[p] = int(high)
        return ends

    def commit(
        self, offsets: Mapping[int, int], *, metadata: Mapping[int, str] | None = None, sync: bool
    ) -> None:
        """Commit next-offsets per partition. A refused sync commit raises InfrastructureError."""
        if not offsets:
            return
        tps = [_tp(self._topic, p, o, (metadata or {}).get(p)) for p, o in offsets.items()]
        try:
            if sync:
                self._consumer.commit(offsets=tps, asynchronous=False)
            else:
                self._consumer.commit(offsets=tps, asynchronous=True)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if isinstance(error, KafkaError) and error.code() == KafkaError._NO_OFFSET:
                return
            raise InfrastructureError(f"offset commit failed: {exc}") from exc

    def pause(self, partitions: Sequence[int]) -> None:
        if partitions:
            self._consumer.pause([TopicPartition(self._topic, p) for p in partitions])

    def resume(self, partitions: Sequence[int]) -> None:
        if partitions:
            self._consumer.resume([TopicPartition(self._topic, p) for p in partitions])

    def partition_count(self) -> int:
        md = self._consumer.list_topics(self._topic, timeout=10)
        topic = md.topics.get(self._topic)
        return len(topic.partitions) if topic is not None and topic.partitions else 0

    def leave(self, timeout: float) -> bool:
        """Unsubscribe, serve the revoke until nothing is assigned, then close; False if it hung.

        librdkafka can hang in close() when a cooperative rebalance is under way
        (confluentinc/librdkafka#4527); unsubscribing and waiting for an empty assignment first
        avoids it. Offsets are committed by the caller beforehand, so giving up is safe.
        """
        deadline = time.monotonic() + timeout
        with contextlib.suppress(KafkaException, RuntimeError):
            self._consumer.unsubscribe()
            while self._consumer.assignment() and time.monotonic() < deadline:
                self._consumer.consume(100, 0.1)
        if self._consumer.assignment():
            return False
        self._consumer.close()
        return True


def _tp(topic: str, partition: int, offset: int, metadata: str | None) -> TopicPartition:
    if metadata is None:
        return TopicPartition(topic, partition, offset)
    return TopicPartition(topic, partition, offset, metadata=metadata)


def _raise_if_fatal(error: KafkaError) -> None:
    # A fatal error reaches the consumer as code _FATAL, whose fatal() flag librdkafka leaves unset
    # (seen with UNRELEASED_INSTANCE_ID: a static member's id still held by a killed predecessor
    # under the consumer group protocol); the member must stop, not sit alive with nothing.
    if error.fatal() or error.code() == KafkaError._FATAL:
        raise InfrastructureError(f"fatal Kafka error: {error}")
