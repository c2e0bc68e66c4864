"""A consumer group and the topics around it, for the operator's commands and the member. [io]

`GroupAdmin` answers what `status`, `replay` and `demo` ask the brokers: topics and their
partitions, the group's state and members, its committed offsets (read and moved), watermarks
and offsets by time. It never joins the group. Calls to the group's coordinator ride out its
moves (`coordinator.ride_out`, one policy); every failure is an InfrastructureError.
`topic_partition_count` and `create_topic` serve the member's side topics.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]  # exported at runtime, missing from the stubs

from consumer.core.coordinator_retry import CoordinatorRetry
from consumer.core.errors import InfrastructureError
from consumer.kafka.configs import admin_config, reader_config
from consumer.kafka.coordinator import ride_out
from consumer.kafka.records import Committed

TIMEOUT = 15.0


@dataclass(frozen=True, slots=True)
class GroupMember:
    member_id: str
    client_id: str
    host: str
    assignment: tuple[tuple[str, int], ...]  # (topic, partition)

    def partitions_of(self, topic: str) -> tuple[int, ...]:
        return tuple(sorted(p for t, p in self.assignment if t == topic))


@dataclass(frozen=True, slots=True)
class GroupDescription:
    state: str  # the broker's: STABLE, EMPTY, DEAD, PREPARING_REBALANCE, ...
    members: tuple[GroupMember, ...]


class GroupAdmin:
    """The brokers' view of `group`, without joining it. Every call blocks up to `timeout` s
    (coordinator calls up to the retry policy's attempts of it) and raises
    InfrastructureError when the brokers fail. `close()` when done (or use it in `with`)."""

    def __init__(
        self,
        config: Mapping[str, Any],
        group: str,
        *,
        timeout: float = TIMEOUT,
        retry: CoordinatorRetry | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._group, self._timeout = group, timeout
        self._retry, self._sleep = retry or CoordinatorRetry(), sleep
        with _translated("create Kafka clients"):
            self._admin = AdminClient(admin_config(config))
            # commits as the group (offsets and metadata), accepted only while it has no member
            self._consumer = Consumer(reader_config(config, group))

    def __enter__(self) -> GroupAdmin:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def topics(self) -> dict[str, list[int]]:
        """Every topic and its partitions."""
        with _translated("list topics"):
            listed = self._admin.list_topics(timeout=self._timeout).topics
        return {
            name: sorted(meta.partitions) for name, meta in listed.items() if meta.error is None
        }

    def partitions(self, topic: str) -> list[int] | None:
        """`topic`'s partitions; None when it does not exist."""
        with _translated(f"describe {topic}"):
            meta = self._admin.list_topics(topic, timeout=self._timeout).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            return None
        return sorted(meta.partitions)

    def describe(self) -> GroupDescription:
        """The group's state and members."""
        found = ride_out(
            lambda: self._admin.describe_consumer_groups([self._group])[self._group].result(
                self._timeout
            ),
            f"describe group {self._group}",
            self._retry,
            self._sleep,
        )
        members = tuple(
            GroupMember(
                m.member_id,
                m.client_id,
                m.host,
                tuple((tp.topic, tp.partition) for tp in m.assignment.topic_partitions),
            )
            for m in found.members
        )
        return GroupDescription(found.state.name, members)

    def committed(self, topic: str, partitions: Sequence[int]) -> list[Committed]:
        """The group's committed offsets of `partitions` and their metadata."""
        tps = [TopicPartition(topic, p) for p in partitions]
        found = ride_out(
            lambda: self._consumer.committed(tps, timeout=self._timeout),
            "read committed offsets",
            self._retry,
            self._sleep,
        )
        return [
            Committed(tp.partition, None if tp.offset < 0 else tp.offset, tp.metadata)
            for tp in found
        ]

    def commit(self, topic: str, offsets: Mapping[int, tuple[int, str]]) -> None:
        """One synchronous commit of partition -> (offset, metadata); refused by the broker
        (InfrastructureError) while the group has members."""
        tps = [
            TopicPartition(topic, p, offset, metadata=metadata)
            for p, (offset, metadata) in offsets.items()
        ]
        ride_out(
            lambda: self._consumer.commit(offsets=tps, asynchronous=False),
            "commit offsets",
            self._retry,
            self._sleep,
        )

    def watermarks(self, topic: str, partitions: Sequence[int]) -> dict[int, tuple[int, int]]:
        """Per partition, (the first offset still there, the offset the next record gets)."""
        with _translated(f"read the offsets of {topic}"):
            return {
                p: _ints(
                    self._consumer.get_watermark_offsets(
                        TopicPartition(topic, p), timeout=self._timeout
                    )
                )
                for p in partitions
            }

    def offsets_for_time(
        self, topic: str, partitions: Sequence[int], timestamp_ms: int
    ) -> dict[int, int]:
        """Per partition, the first offset written at or after `timestamp_ms`; -1: none is."""
        tps = [TopicPartition(topic, p, timestamp_ms) for p in partitions]
        with _translated("look up offsets by time"):
            found = self._consumer.offsets_for_times(tps, timeout=self._timeout)
        return {tp.partition: tp.offset for tp in found}

    def close(self) -> None:
        self._consumer.close()


def topic_partition_count(config: Mapping[str, Any], topic: str, timeout: float = 10.0) -> int:
    """How many partitions `topic` has; 0 when it does not exist."""
    with _translated(f"describe {topic}"):
        admin = AdminClient(admin_config(config))
        meta = admin.list_topics(topic, timeout=timeout).topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        return 0
    return len(meta.partitions)


def create_topic(
    config: Mapping[str, Any],
    topic: str,
    partitions: int,
    settings: Mapping[str, str],
    timeout: float = 30.0,
    *,
    replication_factor: int = -1,
) -> None:
    """Create `topic` (replication: the broker's default unless given); one that already
    exists (a member racing us) is fine."""
    with _translated(f"create {topic}"):
        admin = AdminClient(admin_config(config))
        new = NewTopic(
            topic,
            num_partitions=partitions,
            replication_factor=replication_factor,
            config=dict(settings),
        )
        futures = admin.create_topics([new], request_timeout=timeout)
    try:
        futures[topic].result(timeout=timeout)
    except KafkaException as exc:
        if exc.args and exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return
        raise InfrastructureError(f"cannot create {topic}: {exc}") from exc
    except TimeoutError as exc:  # no broker answered: ours, not a traceback
        raise InfrastructureError(
            f"cannot create {topic}: no answer from the brokers within {timeout:.0f} s"
        ) from exc


@contextmanager
def _translated(what: str) -> Iterator[None]:
    try:
        yield
    except KafkaException as exc:
        raise InfrastructureError(f"cannot {what}: {exc}") from exc


def _ints(marks: tuple[int, int]) -> tuple[int, int]:
    low, high = marks
    return int(low), int(high)
