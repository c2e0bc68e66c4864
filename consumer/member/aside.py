"""Records sent aside: bad input to the dead-letter topic, a parked order's events to parking. [io]

Both keep the original key, value and headers and add ours (deadletters.py). A record sent aside
is settled only once the broker acknowledged it; a failed write is made again after a pause (the
idempotent producer keeps the order). A write refused for its size (MSG_SIZE_TOO_LARGE) can never
succeed: a truncated copy is written instead, then a bare one (oversize.py), so the partition
moves on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import structlog

from consumer.core.deadletters import (
    REDRIVE_POSITION_HEADER,
    Headers,
    ParkedOrder,
    dead_letter_headers,
    header_value,
    parking_headers,
)
from consumer.core.errors import BadInput
from consumer.core.lanes import PendingEvent
from consumer.core.oversize import MAX_LEVEL, shrink
from consumer.kafka.records import SourceRecord
from consumer.kafka.writer import RECORD_TOO_LARGE, RecordWriter
from consumer.ops.metrics import Metrics, SettleOutcome

_log = structlog.get_logger("aside")

REWRITE_DELAY_SECONDS = 1.0  # a failed write is made again after this (no hot loop)
Settle = Callable[[Any, int, SettleOutcome], None]
"""settle(partition state, offset, outcome) on the event loop."""
Landed = Callable[[Any, str, int], None]
"""landed(partition state, order id, parking offset) on the event loop, for parked records."""


@dataclass(frozen=True, slots=True)
class _Aside:
    topic: str
    partition: int | None
    record: SourceRecord
    headers: Headers
    outcome: SettleOutcome
    shrunk: int = 0  # oversize.shrink level: 0 the full copy


class AsideWriter:
    """Produces dead letters and parked records; calls `settle` on the loop once each landed."""

    def __init__(
        self,
        side: RecordWriter,
        *,
        dlq_topic: str,
        parking_topic: str,
        metrics: Metrics,
        settle: Settle,
        owned: Callable[[Any], bool],
        landed: Landed | None = None,
    ) -> None:
        self._side = side
        self._dlq_topic = dlq_topic
        self._parking_topic = parking_topic
        self._metrics = metrics
        self._settle = settle
        self._owned = owned
        self._landed = landed
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def dead_letter(self, ps: Any, record: SourceRecord, error: BadInput) -> None:
        _log.warning(
            "record_dead_lettered",
            partition=record.partition,
            offset=record.offset,
            error_class=error.error_class,
            reason=error.reason,
            field=error.field,
        )
        headers = dead_letter_headers(
            error_class=error.error_class,
            reason=error.reason,
            field=error.field,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            timestamp_ms=record.timestamp_ms,
            failed_at_ms=int(time.time() * 1000),
            original=record.headers,
        )
        self._metrics.record_dead_lettered(record.partition, error.error_class)
        self._produce(ps, _Aside(self._dlq_topic, None, record, headers, "dead_lettered"))

    def park(
        self, ps: Any, records: list[SourceRecord], entries: list[PendingEvent], why: ParkedOrder
    ) -> None:
        """`entries` (their `records`) of one order go to parking, in order, with `why`."""
        order_id = entries[0].event.order_id
        _log.warning(
            "order_parked",
            partition=ps.partition,
            order_id=order_id,
            reason=why.reason,
            status=why.status,
            code=why.code,
            offsets=[e.offset for e in entries],
        )
        for record in records:
            position = header_value(record.headers, REDRIVE_POSITION_HEADER)
            headers = parking_headers(
                order_id=order_id,
                reason=why.reason,
                status=why.status,
                code=why.code,
                dr_message=why.dr_message,
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                timestamp_ms=record.timestamp_ms,
                parked_at_ms=int(time.time() * 1000),
                original=record.headers,
                position=int(position) if position is not None and position.isdigit() else None,
            )
            # partition = source partition, named: whoever owns source partition p reads parking
            # partition p, whatever partitioner the producers of the input topic use
            aside = _Aside(self._parking_topic, record.partition, record, headers, "parked")
            self._produce(ps, aside)
        self._metrics.record_parked(ps.partition, len(entries))

    def _produce(self, ps: Any, aside: _Aside) -> None:
        loop = self._loop
        assert loop is not None

        where: list[int] = []

        def done(error: str | None) -> None:  # Kafka thread
            offset = where[0] if where else -1
            loop.call_soon_threadsafe(self._done, ps, aside, error, offset)

        record = aside.record
        copy = shrink(record.key, record.value, aside.headers, aside.shrunk)
        self._side.produce(
            aside.topic,
            copy.key,
            copy.value,
            copy.headers,
            done,
            partition=aside.partition,
            landed=where.append,
        )

    def _done(self, ps: Any, aside: _Aside, error: str | None, offset: int) -> None:
        if not self._owned(ps):
            return  # the partition went away; its next owner redoes the record
        if error is None:
            self._settle(ps, aside.record.offset, aside.outcome)
            order_id = header_value(aside.headers, "fc.park.order")
            if self._landed is not None and aside.outcome == "parked" and order_id is not None:
                self._landed(ps, order_id, offset)
            return
        _log.error(
            "side_topic_write_failed",
            topic=aside.topic,
            partition=aside.record.partition,
            offset=aside.record.offset,
            error=error,
        )
        if error.startswith(RECORD_TOO_LARGE) and aside.shrunk < MAX_LEVEL:
            smaller = replace(aside, shrunk=aside.shrunk + 1)
            _log.warning(
                "side_topic_record_truncated",
                topic=aside.topic,
                partition=aside.record.partition,
                offset=aside.record.offset,
                value_size=len(aside.record.value or b""),
                level=smaller.shrunk,
            )
            self._produce(ps, smaller)
            return
        loop = self._loop
        assert loop is not None
        loop.call_later(REWRITE_DELAY_SECONDS, self._produce, ps, aside)
