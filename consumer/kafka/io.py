"""Kafka adapters (confluent-kafka is touched only here). [io]

Translates confluent-kafka's messages, partitions and errors into ours. Nothing in this module
decides anything: the engine says what to consume, commit, pause and produce.

Threading: every method of `KafkaSource` must be called from one thread (the engine's Kafka
thread); the rebalance callbacks it is given run on that thread, inside `consume()`.
`SideTopicWriter.produce` may be called from the event loop; its delivery callbacks run inside
`poll()`, which the engine calls from the Kafka thread.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]  # exported at runtime, missing from the stubs

from consumer.config.group_protocol import group_protocol_config
from consumer.config.settings import Settings, passthrough_for
from consumer.core.errors import InfrastructureError

_log = structlog.get_logger("librdkafka")

COMMITTED_ATTEMPTS = 20
# how `SideTopicWriter.produce` reports a record the producer or broker refused for its size
# (MSG_SIZE_TOO_LARGE: over message.max.bytes): making it again can never succeed
RECORD_TOO_LARGE = "record too large"
# librdkafka's defaults prefetch 64 MiB of payload (100,000 messages per partition, 50 MiB
# fetches), held on top of the MAX_BUFFERED_PER_PARTITION records in Python and overshot several
# times by its per-message overhead: ~65 MiB of a member's RSS with small events. These keep
# ~15 MiB, still tens of thousands of records ahead of the engine. KAFKA_* passthrough overrides.
PREFETCH_BOUND: dict[str, int] = {
    "queued.max.messages.kbytes": 8192,
    "queued.min.messages": 5000,
    "fetch.max.bytes": 4 * 1024 * 1024,
}
Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One consumed record, as ours (no confluent-kafka type leaks past this module)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp_ms: int | None


@dataclass(frozen=True, slots=True)
class Committed:
    """A partition's committed offset (None if never committed) and metadata, at assignment."""

    partition: int
    offset: int | None
    metadata: str | None


PartitionsCallback = Callable[[list[int]], None]


def consumer_config(settings: Settings, *, client_id: str | None = None) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "group.id": settings.group_id,
        "enable.auto.commit": False,  # we commit only settled offsets
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        # KIP-848 `consumer` (default) or `classic`: only the keys that protocol accepts
        **group_protocol_config(settings.group_protocol),
        **PREFETCH_BOUND,
        "logger": _LibrdkafkaLogger(),
    }
    if client_id:
        config["client.id"] = client_id
    config.update(passthrough_for(settings.kafka_extra, "member"))
    return config


def producer_config(settings: Settings) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "logger": _LibrdkafkaLogger(),
    }
    config.update(passthrough_for(settings.kafka_extra, "producer"))
    return config


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
            records.append(_record(msg))
        return records

    def committed(
        self, partitions: Sequence[int], timeout: float = 10.0, attempts: int = COMMITTED_ATTEMPTS
    ) -> list[Committed]:
        """Committed offsets and metadata; retried while the group coordinator moves or loads."""
        tps = [TopicPartition(self._topic, p) for p in partitions]
        for attempt in range(attempts):
            try:
                found = self._consumer.committed(tps, timeout=timeout)
                break
            except KafkaException as exc:
                if attempt == attempts - 1:
                    raise InfrastructureError(f"cannot read committed offsets: {exc}") from exc
                time.sleep(0.5)
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


class KafkaThread(concurrent.futures.Executor):
    """The one thread that makes confluent-kafka calls; a daemon, so a hung call cannot keep the
    process from exiting after shutdown has committed what it must."""

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[
            tuple[concurrent.futures.Future[Any], Callable[[], Any]] | None
        ] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="kafka", daemon=True)
        self._thread.start()

    def submit(
        self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._calls.put((future, lambda: fn(*args, **kwargs)))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._calls.put(None)
        if wait:
            self._thread.join(timeout=5)

    def _serve(self) -> None:
        while (call := self._calls.get()) is not None:
            future, fn = call
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)


class SideTopicWriter:
    """Produces to the dead-letter and parking topics with an idempotent producer."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self._producer = Producer(dict(config))

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers,
        on_done: Callable[[str | None], None],
        *,
        partition: int | None = None,
        landed: Callable[[int], None] | None = None,
    ) -> None:
        """Queue one record (to `partition`, else the key's); `on_done(None)` once acknowledged,
        `on_done(reason)` if it failed; a reason starting with RECORD_TOO_LARGE if it is too big;
        `landed(offset)` just before `on_done(None)`."""

        def delivered(err: KafkaError | None, msg: Message) -> None:
            offset = msg.offset()
            if err is None and landed is not None and offset is not None:
                landed(offset)
            on_done(None if err is None else _side_failure(err))

        while True:
            try:
                self._producer.produce(
                    topic,
                    value=value,
                    key=key,
                    headers=list(headers),
                    on_delivery=delivered,
                    partition=-1 if partition is None else partition,
                )
                return
            except BufferError:
                self._producer.poll(0.1)
            except KafkaException as exc:  # e.g. that partition does not exist, or too large
                error = exc.args[0] if exc.args else None
                on_done(_side_failure(error) if isinstance(error, KafkaError) else str(exc))
                return

    def poll(self, timeout: float = 0.0) -> None:
        """Run delivery callbacks."""
        self._producer.poll(timeout)

    def flush(self, timeout: float) -> int:
        return int(self._producer.flush(timeout))


def _record(msg: Message[Any, Any]) -> SourceRecord:
    kind, ts = msg.timestamp()
    topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
    # consumed records always have them
    assert topic is not None
    assert partition is not None
    assert offset is not None
    return SourceRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        key=msg.key(),
        value=msg.value(),
        headers=_headers(msg.headers()),
        timestamp_ms=ts if kind != 0 else None,
    )


def _side_failure(error: KafkaError) -> str:
    too_large = (KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE)
    return f"{RECORD_TOO_LARGE}: {error}" if error.code() in too_large else str(error)


def _headers(raw: Any) -> Headers:
    return tuple((str(k), _as_bytes(v)) for k, v in (raw or []))


def _as_bytes(value: str | bytes | None) -> bytes:
    if value is None:
        return b""
    return value.encode() if isinstance(value, str) else value


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


class _LibrdkafkaLogger:
    """Routes librdkafka's own log lines into structlog instead of raw stderr."""

    def log(self, level: int, fmt: str, *args: object) -> None:
        # confluent-kafka hands over Python logging levels (40 error, 30 warning, ...)
        message = fmt % args if args else fmt
        if level >= 40:
            _log.error("librdkafka_log", message=message)
        elif level >= 30:
            _log.warning("librdkafka_log", message=message)


# -- side topics the member keeps per source partition (changelog, parking) -------------------


def topic_partition_count(config: Mapping[str, Any], topic: str, timeout: float = 10.0) -> int:
    """How many partitions `topic` has; 0 when it does not exist."""
    admin = AdminClient(dict(config))
    try:
        meta = admin.list_topics(topic, timeout=timeout).topics.get(topic)
    except KafkaException as exc:
        raise InfrastructureError(f"cannot describe {topic}: {exc}") from exc
    if meta is None or meta.error is not None or not meta.partitions:
        return 0
    return len(meta.partitions)


def create_topic(
    config: Mapping[str, Any],
    topic: str,
    partitions: int,
    settings: Mapping[str, str],
    timeout: float = 30.0,
) -> None:
    """Create `topic`; one that already exists (a member racing us) is fine."""
    admin = AdminClient(dict(config))
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, config=dict(settings))],
        request_timeout=timeout,
    )
    try:
        futures[topic].result(timeout=timeout)
    except KafkaException as exc:
        if exc.args and exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return
        raise InfrastructureError(f"cannot create {topic}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class SideRecord:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp_ms: int | None


def read_side_records(
    config: Mapping[str, Any],
    topic: str,
    partitions: Sequence[int],
    each: Callable[[SideRecord], None],
    *,
    since_ms: int | None = None,
    timeout: float = 120.0,
) -> int:
    """Call `each(record)` for every record of `partitions` of `topic` (written at or after
    `since_ms`, when given), up to the end each had when called, in offset order per partition;
    the count read. A missing topic or partition reads nothing."""
    reader = Consumer(
        {
            **config,
            "group.id": "fc-side-reader",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
    )
    try:
        meta = reader.list_topics(topic, timeout=30).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            return 0
        wanted = [p for p in partitions if p in meta.partitions]
        marks = {
            p: reader.get_watermark_offsets(TopicPartition(topic, p), timeout=30) for p in wanted
        }
        ends = {p: high for p, (_, high) in marks.items()}
        begin = {p: low for p, (low, _) in marks.items()}
        if since_ms is not None and wanted:
            starts = reader.offsets_for_times(
                [TopicPartition(topic, p, since_ms) for p in wanted], timeout=30
            )
            begin = {
                t.partition: (t.offset if t.offset >= 0 else ends[t.partition]) for t in starts
            }
        todo = {p for p in wanted if begin[p] < ends[p]}
        reader.assign([TopicPartition(topic, p, begin[p]) for p in todo])
        count = 0
        deadline = time.monotonic() + timeout
        while todo and time.monotonic() < deadline:
            for msg in reader.consume(1000, 0.2):
                partition, offset = msg.partition(), msg.offset()
                if msg.error() is not None or partition not in todo or offset is None:
                    continue
                kind, ts = msg.timestamp()
                each(
                    SideRecord(
                        partition,
                        offset,
                        msg.key(),
                        msg.value(),
                        _headers(msg.headers()),
                        ts if kind != 0 else None,
                    )
                )
                count += 1
                if offset + 1 >= ends[partition]:
                    todo.discard(partition)
        if todo:
            raise InfrastructureError(f"could not read {topic} to its end within {timeout}s")
        return count
    except KafkaException as exc:
        raise InfrastructureError(f"cannot read {topic}: {exc}") from exc
    finally:
        reader.close()
