"""What a member tells of its progress: a log line every few seconds, gauges every second. [io]"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from consumer.core.breaker import CircuitBreaker
from consumer.kafka.source import KafkaSource
from consumer.member.allocator import release_free_memory
from consumer.member.holdings import EngineStats, Holdings
from consumer.ops.metrics import Metrics

_log = structlog.get_logger("engine")
REPORT_INTERVAL_SECONDS = 10.0
GAUGE_INTERVAL_SECONDS = 1.0


class ProgressReport:
    """`report()` and `gauges()` are called every pass of the loop and act when they are due."""

    def __init__(
        self,
        held: Holdings,
        stats: EngineStats,
        source: KafkaSource,
        metrics: Metrics,
        breaker: CircuitBreaker,
        *,
        clock: Callable[[], float],
    ) -> None:
        self._held = held
        self._stats = stats
        self._source = source
        self._metrics = metrics
        self._breaker = breaker
        self._clock = clock
        self._next_report = 0.0
        self._next_gauges = 0.0

    def report(self) -> None:
        """Every few seconds, one line per member saying where each partition stands."""
        now = self._clock()
        if now < self._next_report:
            return
        self._next_report = now + REPORT_INTERVAL_SECONDS
        release_free_memory()  # what glibc keeps after a burst would stay RSS (allocator.py)
        _log.info(
            "member_progress",
            in_flight=self._held.in_flight,
            settled=self._stats.events_settled,
            posts=self._stats.posts,
            reads=self._stats.reads,
            partitions={
                p: {
                    "committed": ps.last_committed,
                    "oldest_unsettled": ps.watermark.oldest_unsettled(),
                    "proposed": len(ps.proposed),
                    "pending": ps.lanes.pending,
                    "in_flight": ps.lanes.in_flight,
                    "paused": ps.paused,
                }
                for p, ps in sorted(self._held.partitions.items())
            },
        )

    def gauges(self) -> None:
        """Once a second: in flight, the breaker, and per partition its commit, lag, age of the
        oldest unsettled record and whether it is paused."""
        now = self._clock()
        if now < self._next_gauges:
            return
        self._next_gauges = now + GAUGE_INTERVAL_SECONDS
        self._metrics.set_in_flight(self._held.in_flight)
        self._metrics.set_circuit_open(self._breaker.is_open)
        partitions = self._held.partitions
        ends = self._source.cached_end_offsets(list(partitions))
        wall_ms = time.time() * 1000
        for p, ps in partitions.items():
            oldest = ps.watermark.oldest_unsettled()
            record = ps.records.get(oldest) if oldest is not None else None
            age = 0.0
            if record is not None and record.timestamp_ms is not None:
                age = max(0.0, (wall_ms - record.timestamp_ms) / 1000)
            self._metrics.set_partition(p, ps.last_committed, ends.get(p), age, ps.paused)
