"""The applied-events changelog and the member's filter of recent event ids. [io]

Every batch settled as applied (posted now, or found at Digital River) is written to the
changelog topic (`DEDUPE_TOPIC`, default `<topic>.applied`): key = order id, value = the event
ids (`dedupe.encode_applied`), header `fc.offsets` = their source offsets in the same order
(`dedupe.encode_offsets`; older records have none), ALWAYS to the partition that equals the
source partition, so whoever owns source partition p later reads partition p whatever
partitioner produced the input. Its records are settled (their offsets may be committed) only
once the broker acknowledged the changelog record: a committed event is always in the
changelog. The topic keeps records for the window (`DEDUPE_WINDOW_HOURS`, retention.ms,
cleanup.policy=delete); a member creates it when it is missing and refuses to start when it has
fewer partitions than the input topic.

In memory: one `SeenFilter` per owned partition, fed on every applied batch and rebuilt from the
changelog when the partition is assigned (`load`, on the Kafka thread; `install`, on the loop).
The same read collects, for the range a new owner may find unsure ([committed, end offset)), the
exact event ids applied from it (`applied_facts.AppliedFacts`): a replayed record the changelog
names is settled with no request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from consumer.core.applied_facts import AppliedFacts
from consumer.core.dedupe import (
    OFFSETS_HEADER,
    SeenFilter,
    decode_applied,
    decode_offsets,
    encode_applied,
    encode_offsets,
)
from consumer.core.errors import ConfigurationError
from consumer.kafka.admin import create_topic, topic_partition_count
from consumer.kafka.reader import read_to_end
from consumer.kafka.records import Headers, SourceRecord
from consumer.kafka.writer import RecordWriter

_log = structlog.get_logger("dedupe")
HOUR_MS = 3_600_000


def wall_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class _Write:
    """One changelog record, kept for a retry after a failed write."""

    partition: int
    key: bytes
    value: bytes
    headers: Headers


@dataclass
class Restored:
    """What `AppliedLog.load` read for newly assigned partitions (partition -> ...)."""

    filters: dict[int, SeenFilter] = field(default_factory=dict)
    facts: dict[int, AppliedFacts] = field(default_factory=dict)


def header_of(headers: Headers, name: str) -> bytes | None:
    return next((value for key, value in headers if key == name), None)


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

    def load(
        self, partitions: Sequence[int], suspect: Mapping[int, tuple[int, int]] | None = None
    ) -> Restored:
        """Filters of `partitions`, rebuilt from the changelog's records within the window, and
        for each partition in `suspect` (partition -> [start, stop) of source offsets a new
        owner may find unsure) the exact event ids applied from that range."""
        now = self._wall()
        restored = Restored(filters={p: SeenFilter(self.window_ms) for p in partitions})
        restored.facts = {
            p: AppliedFacts(start, stop)
            for p, (start, stop) in (suspect or {}).items()
            if p in restored.filters and start < stop
        }
        if not partitions:
            return restored

        since = now - self.window_ms

        def each(record: SourceRecord) -> None:
            at_ms = since if record.timestamp_ms is None else record.timestamp_ms
            event_ids = decode_applied(record.value)
            restored.filters[record.partition].add_all(event_ids, at_ms)
            facts = restored.facts.get(record.partition)
            offsets = decode_offsets(header_of(record.headers, OFFSETS_HEADER))
            if facts is not None and offsets is not None:
                facts.note(offsets, event_ids)

        started = time.monotonic()
        count = read_to_end(
            self._reader_config, self.topic, each, partitions=list(partitions), since_ms=since
        )
        for found in restored.filters.values():
            found.settle()
        if count:
            _log.info(
                "dedupe_restored",
                partitions=sorted(partitions),
                records=count,
                seconds=round(time.monotonic() - started, 3),
                filter_bytes=sum(f.nbytes for f in restored.filters.values()),
                exact_ids={p: len(f) for p, f in restored.facts.items() if len(f)},
                exact_ids_capped=sorted(p for p, f in restored.facts.items() if f.full),
            )
        return restored

    # -- on the loop ---------------------------------------------------------------------------
    def install(self, restored: Restored) -> None:
        self._filters.update(restored.filters)

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
        self,
        partition: int,
        order_id: str,
        event_ids: Sequence[str],
        then: Callable[[], None],
        offsets: Sequence[int] = (),
    ) -> None:
        """Remember `event_ids` (from source `offsets`, same order) as applied; `then()` on the
        loop once the changelog has them."""
        if not event_ids:
            then()
            return
        seen = self._filters.get(partition)
        if seen is not None:
            seen.add_all(event_ids, self._wall())
        headers: Headers = ()
        if len(offsets) == len(event_ids):
            headers = ((OFFSETS_HEADER, encode_offsets(offsets)),)
        write = _Write(partition, order_id.encode("utf-8"), encode_applied(event_ids), headers)
        self._produce(write, then)

    def _produce(self, write: _Write, then: Callable[[], None]) -> None:
        loop = self._loop
        assert loop is not None

        def done(error: str | None) -> None:  # Kafka thread
            loop.call_soon_threadsafe(self._done, write, then, error)

        self._side.produce(
            self.topic, write.key, write.value, write.headers, done, partition=write.partition
        )

    def _done(self, write: _Write, then: Callable[[], None], error: str | None) -> None:
        if error is None:
            then()
            return
        if write.partition not in self._filters:
            return  # the partition went away: its next owner reconciles these records
        _log.error("dedupe_write_failed", topic=self.topic, partition=write.partition, error=error)
        self._produce(write, then)

    @property
    def filter_bytes(self) -> int:
        return sum(f.nbytes for f in self._filters.values())
