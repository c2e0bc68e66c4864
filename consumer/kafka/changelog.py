"""The applied-events changelog and the member's filter of recent event ids. [io]

Every batch settled as applied (posted now, or found at Digital River) is written to the
changelog topic (`DEDUPE_TOPIC`, default `<topic>.applied`): key = order id, value = the event
ids (`dedupe.encode_applied`), ALWAYS to the partition that equals the source partition, so
whoever owns source partition p later reads partition p whatever partitioner produced the input.
Its records are settled (their offsets may be committed) only once the broker acknowledged the
changelog record: a committed event is always in the changelog. The topic keeps records for the
window (`DEDUPE_WINDOW_HOURS`, retention.ms, cleanup.policy=delete); a member creates it when it
is missing and refuses to start when it has fewer partitions than the input topic.

In memory: one `SeenFilter` per owned partition, fed on every applied batch and rebuilt from the
changelog when the partition is assigned (`load`, on the Kafka thread; `install`, on the loop).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import structlog

from consumer.core.dedupe import SeenFilter, decode_applied, encode_applied
from consumer.core.errors import ConfigurationError
from consumer.kafka.admin import create_topic, topic_partition_count
from consumer.kafka.reader import read_to_end
from consumer.kafka.records import SourceRecord
from consumer.kafka.writer import RecordWriter

_log = structlog.get_logger("dedupe")
HOUR_MS = 3_600_000


def wall_ms() -> int:
    return int(time.time() * 1000)


class AppliedLog:
    """What this member's partitions applied within the window: filters + changelog writes."""

    def __init__(
        self,
        side: RecordWriter,
        topic: str,
        *,
        window_ms: int,
        reader_config: Mapping[str, Any],
        wall_clock: Callable[[], int] = wall_ms,
    ) -> None:
        self._side = side
        self.topic = topic
        self.window_ms = window_ms
        self._reader_config = reader_config
        self._wall = wall_clock
        self._filters: dict[int, SeenFilter] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    # -- at start and on assignment (Kafka thread) --------------------------------------------
    def ensure_topic(self, input_topic: str, input_partitions: int) -> None:
        """Create the changelog topic when missing; refuse one that cannot mirror the input."""
        found = topic_partition_count(self._reader_config, self.topic)
        if found == 0:
            create_topic(
                self._reader_config,
                self.topic,
                input_partitions,
                {"cleanup.policy": "delete", "retention.ms": str(self.window_ms + HOUR_MS)},
            )
            _log.info("dedupe_topic_created", topic=self.topic, partitions=input_partitions)
        elif found < input_partitions:
            raise ConfigurationError(
                f"{self.topic} has {found} partitions, fewer than the {input_partitions} of "
                f"{input_topic}: partition p of it holds what source partition p applied",
                setting="DEDUPE_TOPIC",
            )

    def load(self, partitions: Sequence[int]) -> dict[int, SeenFilter]:
        """Filters of `partitions`, rebuilt from the changelog's records within the window."""
        now = self._wall()
        filters = {p: SeenFilter(self.window_ms) for p in partitions}
        if not filters:
            return filters

        since = now - self.window_ms

        def each(record: SourceRecord) -> None:
            at_ms = since if record.timestamp_ms is None else record.timestamp_ms
            filters[record.partition].add_all(decode_applied(record.value), at_ms)

        started = time.monotonic()
        count = read_to_end(
            self._reader_config, self.topic, each, partitions=list(partitions), since_ms=since
        )
        for found in filters.values():
            found.settle()
        if count:
            _log.info(
                "dedupe_restored",
                partitions=sorted(partitions),
                records=count,
                seconds=round(time.monotonic() - started, 3),
                filter_bytes=sum(f.nbytes for f in filters.values()),
            )
        return filters

    # -- on the loop ---------------------------------------------------------------------------
    def install(self, filters: Mapping[int, SeenFilter]) -> None:
        self._filters.update(filters)

    def forget(self, partition: int) -> None:
        self._filters.pop(partition, None)

    def hits(self, partition: int, event_ids: Iterable[str]) -> frozenset[str]:
        """Which of `event_ids` may have been applied already (look before posting them)."""
        seen = self._filters.get(partition)
        if seen is None:
            return frozenset()
        now = self._wall()
        return frozenset(e for e in event_ids if seen.might_contain(e, now))

    def record(
        self, partition: int, order_id: str, event_ids: Sequence[str], then: Callable[[], None]
    ) -> None:
        """Remember `event_ids` as applied; `then()` on the loop once the changelog has them."""
        if not event_ids:
            then()
            return
        seen = self._filters.get(partition)
        if seen is not None:
            seen.add_all(event_ids, self._wall())
        self._produce(partition, order_id.encode("utf-8"), encode_applied(event_ids), then)

    def _produce(self, partition: int, key: bytes, value: bytes, then: Callable[[], None]) -> None:
        loop = self._loop
        assert loop is not None

        def done(error: str | None) -> None:  # Kafka thread
            loop.call_soon_threadsafe(self._done, partition, key, value, then, error)

        self._side.produce(self.topic, key, value, (), done, partition=partition)

    def _done(
        self, partition: int, key: bytes, value: bytes, then: Callable[[], None], error: str | None
    ) -> None:
        if error is None:
            then()
            return
        if partition not in self._filters:
            return  # the partition went away: its next owner reconciles these records
        _log.error("dedupe_write_failed", topic=self.topic, partition=partition, error=error)
        self._produce(partition, key, value, then)

    @property
    def filter_bytes(self) -> int:
        return sum(f.nbytes for f in self._filters.values())
