"""The loop: poll -> decode -> lanes -> post -> settle -> commit. [io]

The only module that knows the order of the steps. Threads: the asyncio event loop owns every
piece of state; one Kafka thread makes every confluent-kafka call (consume, commit, pause, poll
the producer). Rebalance callbacks run on the Kafka thread inside `consume()` and hand the work
to the loop, waiting for it (bounded by the drain timeout) before the partitions go.

Guarantees carried out here (PRODUCT.md): per order one POST in flight and offset order (lanes);
commits only over settled records (watermark), periodic while running and synchronous on revoke
and shutdown; bad input to the dead-letter topic; a permanent failure parks the order; 401/403
stop work; and the dispatch horizon (partition.py) makes crashes and rebalances reconcilable.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import structlog

from consumer.allocator import release_free_memory
from consumer.aside import AsideWriter
from consumer.breaker import CircuitBreaker
from consumer.budget import TokenBucket
from consumer.codec import EventCodec
from consumer.config import Settings
from consumer.deadletters import (
    REDRIVEN_HEADER,
    DeadLetterGuard,
    ParkedOrder,
    header_value,
)
from consumer.delivery import Decision, Done, FulfillmentSender, Halt, ParkOrder, TryLater
from consumer.errors import BadInput
from consumer.fulfillments import MAX_EVENTS_PER_REQUEST
from consumer.health import HealthServer
from consumer.kafka_io import (
    KafkaSource,
    KafkaThread,
    SideTopicWriter,
    SourceRecord,
)
from consumer.lanes import Batch, CoalescingPolicy, PendingEvent
from consumer.membership import EngineStats, GroupMembership, State
from consumer.metrics import Metrics, SettleOutcome
from consumer.partition import StagedEvent

_log = structlog.get_logger("engine")
CONSUME_BATCH = 500
IDLE_POLL_SECONDS = 0.05
REPORT_INTERVAL_SECONDS = 10.0
EXIT_OK = 0
EXIT_CONFIGURATION = 3  # Digital River refused the key (401/403): fix the key, not the data
EXIT_DEAD_LETTER_LIMIT = 4  # most recent records were bad: a producer or schema deploy is wrong


class Engine(GroupMembership):
    """One consumer-group member. `run()` returns EXIT_OK, or why it stopped early:
    EXIT_CONFIGURATION (Digital River refused the key) or EXIT_DEAD_LETTER_LIMIT."""

    def __init__(
        self,
        settings: Settings,
        source: KafkaSource,
        side: SideTopicWriter,
        sender_factory: Callable[[TokenBucket], FulfillmentSender],
        codec: EventCodec,
        *,
        metrics: Metrics,
        health: HealthServer | None = None,
        side_reader_config: Mapping[str, Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        max_events_per_post: int = MAX_EVENTS_PER_REQUEST,
    ) -> None:
        self._settings = settings
        self._source = source
        self._side = side
        self._codec = codec
        self._clock = clock
        self._rng = rng or random.Random()
        self._policy = CoalescingPolicy(max_events=min(max_events_per_post, MAX_EVENTS_PER_REQUEST))
        self._budget = TokenBucket(
            rate=settings.dr_rate_limit, burst=max(1.0, settings.dr_rate_limit / 10)
        )
        self._sender = sender_factory(self._budget)
        self._partitions: dict[int, State] = {}
        self._total_partitions = 0
        self._in_flight = 0
        self._halted: str | None = None
        self._exit_code = EXIT_OK
        self._metrics = metrics
        self._health = health
        self._breaker = CircuitBreaker()
        self._guard = DeadLetterGuard(max_ratio=settings.dlq_max_ratio)
        self._next_gauges = 0.0
        self._aside = AsideWriter(
            side,
            dlq_topic=settings.dlq_topic,
            parking_topic=settings.parking_topic,
            metrics=metrics,
            settle=lambda ps, offset, outcome: self._settle(ps, (offset,), outcome),
            owned=lambda ps: self._partitions.get(ps.partition) is ps,
        )
        self._side_reader_config = side_reader_config or {
            "bootstrap.servers": settings.bootstrap_servers
        }
        self._kafka_thread = KafkaThread()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._next_commit = 0.0
        self._next_report = 0.0
        self.stats = EngineStats()

    # -- the loop ----------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> int:
        self._loop = asyncio.get_running_loop()
        self._aside.bind(self._loop)
        self._total_partitions = await self._kafka(self._source.partition_count)
        await self._kafka(self._source.subscribe, self._on_assign, self._on_revoke, self._on_lost)
        _log.info("member_started", topic=self._source.topic, group=self._settings.group_id)
        try:
            while not stop.is_set() and self._halted is None:
                commits, horizons = self._commit_request()
                pause, resume = self._backpressure()
                idle = not any(
                    ps.lanes.has_work_ready(self._clock()) for ps in self._partitions.values()
                )
                records, committed = await self._kafka(
                    self._step, commits, pause, resume, IDLE_POLL_SECONDS if idle else 0.0
                )
                if committed:
                    self._confirm(commits, horizons)
                for record in records:
                    self._accept(record)
                for ps in self._partitions.values():
                    self._release_staged(ps)
                self._dispatch_all()
                self._maybe_report()
                self._publish_gauges()
                if self._health is not None:
                    self._health.mark_alive()
        finally:
            await self._shutdown()
        return self._exit_code

    def _halt(self, reason: str, exit_code: int) -> None:
        """Stop work: nothing more is dispatched; the loop ends and shuts down cleanly."""
        if self._halted is not None:
            return
        self._halted, self._exit_code = reason, exit_code
        if exit_code == EXIT_CONFIGURATION:
            _log.error("member_stopped_by_configuration", reason=reason)
            if self._health is not None:
                self._health.fail_configuration(reason)
        else:
            _log.error("member_stopped", reason=reason)
            if self._health is not None:
                self._health.set_ready(False, reason)

    def _publish_gauges(self) -> None:
        now = self._clock()
        if now < self._next_gauges:
            return
        self._next_gauges = now + 1.0
        self._metrics.set_in_flight(self._in_flight)
        self._metrics.set_circuit_open(self._breaker.is_open)
        ends = self._source.cached_end_offsets(list(self._partitions))
        wall_ms = time.time() * 1000
        for p, ps in self._partitions.items():
            oldest = ps.watermark.oldest_unsettled()
            record = ps.records.get(oldest) if oldest is not None else None
            age = 0.0
            if record is not None and record.timestamp_ms is not None:
                age = max(0.0, (wall_ms - record.timestamp_ms) / 1000)
            self._metrics.set_partition(p, ps.last_committed, ends.get(p), age, ps.paused)

    def _step(
        self,
        commits: dict[int, tuple[int, str]],
        pause: list[int],
        resume: list[int],
        timeout: float,
    ) -> tuple[list[SourceRecord], bool]:
        """Kafka thread: commit (sync), pause/resume, deliver producer callbacks, consume."""
        ok = self._commit_now(commits, "running")
        self._source.pause(pause)
        self._source.resume(resume)
        self._side.poll(0)
        return self._source.consume(CONSUME_BATCH, timeout), ok

    def _maybe_report(self) -> None:
        """Every few seconds, one line per member saying where each partition stands."""
        now = self._clock()
        if now < self._next_report:
            return
        self._next_report = now + REPORT_INTERVAL_SECONDS
        release_free_memory()  # what glibc keeps after a burst would stay RSS (allocator.py)
        _log.info(
            "member_progress",
            in_flight=self._in_flight,
            settled=self.stats.events_settled,
            posts=self.stats.posts,
            reads=self.stats.reads,
            partitions={
                p: {
                    "committed": ps.last_committed,
                    "oldest_unsettled": ps.watermark.oldest_unsettled(),
                    "staged": len(ps.staged),
                    "pending": ps.lanes.pending,
                    "in_flight": ps.lanes.in_flight,
                    "paused": ps.paused,
                }
                for p, ps in sorted(self._partitions.items())
            },
        )

    # -- records in ----------------------------------------------------------------------------
    def _accept(self, record: SourceRecord) -> None:
        ps = self._partitions.get(record.partition)
        if ps is None or ps.revoking:
            return  # not ours any more: the next owner reads it from the committed offset
        last = ps.watermark.last_tracked
        if last is not None and record.offset <= last:
            return
        self.stats.records += 1
        self._metrics.record_consumed(ps.partition)
        ps.watermark.track(record.offset)
        ps.keep(record, record.offset)
        try:
            decoded = self._codec.decode(record.key, record.value)
        except BadInput as exc:
            self._guard.record(bad=True)
            if self._guard.exceeded():
                self._halt(
                    f"dead-letter limit: {self._guard.bad_in_window} of the last "
                    f"{self._guard.window_size} records were bad (DLQ_MAX_RATIO="
                    f"{self._guard.max_ratio}); nothing more is dead-lettered",
                    EXIT_DEAD_LETTER_LIMIT,
                )
                return
            self.stats.dead_lettered += 1
            self._aside.dead_letter(ps, record, exc)
            return
        self._guard.record(bad=False)
        self._metrics.record_decoded(ps.partition)
        ps.staged.append(StagedEvent(record, record.offset, decoded.event))

    def _release_staged(self, ps: State) -> None:
        """Staged records under the confirmed horizon may be posted: into the lanes."""
        while ps.staged and ps.staged[0].offset < ps.horizon:
            staged = ps.staged.popleft()
            self._enqueue(ps, staged.record, staged.event)

    def _enqueue(self, ps: State, record: SourceRecord, event: Any) -> None:
        redriven = header_value(record.headers, REDRIVEN_HEADER) is not None
        if redriven and ps.parked.pop(event.order_id, None) is not None:
            _log.info("order_unparked", partition=ps.partition, order_id=event.order_id)
        if event.order_id in ps.parked:
            self._park(ps, [PendingEvent(record.offset, event)], ps.parked[event.order_id])
            return
        suspect = redriven or record.offset in ps.suspect
        ps.lanes.add(record.offset, event, suspect=suspect)

    def _park(self, ps: State, entries: list[PendingEvent], why: ParkedOrder) -> None:
        self.stats.parked += len(entries)
        self._aside.park(ps, [ps.records[e.offset] for e in entries], entries, why)

    # -- dispatch ------------------------------------------------------------------------------
    def _dispatch_all(self) -> None:
        if self._halted is not None:
            return
        now = self._clock()
        if self._breaker.is_open:
            self._dispatch_probe(now)
            return
        states = list(self._partitions.values())
        self._rng.shuffle(states)  # no partition is always first in line
        for ps in states:
            free = self._settings.max_in_flight - self._in_flight
            if free <= 0:
                return
            if ps.revoking:
                continue
            for batch in ps.lanes.next_batches(now, free):
                self._start(ps, batch)

    def _dispatch_probe(self, now: float) -> None:
        """While Digital River looks down, one batch at a time tests whether it is back."""
        for ps in self._partitions.values():
            if ps.revoking or not ps.lanes.has_work_ready(now):
                continue
            if self._breaker.allows(now):
                _log.info("circuit_probe", partition=ps.partition)
                for batch in ps.lanes.next_batches(now, 1):
                    self._start(ps, batch)
            return

    def _start(self, ps: State, batch: Batch) -> None:
        self._in_flight += 1
        ps.dispatched_max = max(ps.dispatched_max, batch.last_offset)
        attempt = ps.attempts.get(batch.order_id, 0)
        task = asyncio.create_task(self._deliver(ps, batch, attempt))
        ps.tasks.add(task)
        task.add_done_callback(ps.tasks.discard)

    async def _deliver(self, ps: State, batch: Batch, attempt: int) -> None:
        try:
            decision = await self._sender.send(batch, attempt)
        except asyncio.CancelledError:
            self._in_flight -= 1
            raise
        except Exception:
            _log.exception("delivery_crashed", partition=ps.partition, order_id=batch.order_id)
            decision = TryLater(1.0, True, "internal error", None, 0)
        self._in_flight -= 1
        self._carry_out(ps, batch, attempt, decision)
        self._dispatch_all()

    def _carry_out(self, ps: State, batch: Batch, attempt: int, decision: Decision) -> None:
        if self._partitions.get(ps.partition) is not ps:
            return  # the partition went away while this batch was out
        self.stats.reads += decision.reads if not isinstance(decision, Halt) else 0
        self._watch_outage(decision)
        if isinstance(decision, Done):
            if decision.posted:
                self.stats.posts += 1
            self.stats.already_applied += len(decision.already)
            ps.attempts.pop(batch.order_id, None)
            ps.lanes.complete(batch)
            self._settle(ps, (e.offset for e in decision.posted), "applied")
            self._settle(ps, (e.offset for e in decision.already), "already_applied")
        elif isinstance(decision, TryLater):
            if decision.status != 429:  # being told to slow down is no failure of this order
                ps.attempts[batch.order_id] = attempt + 1
            ps.lanes.retry(batch, self._clock() + decision.delay, ambiguous=decision.ambiguous)
            _log.warning(
                "fulfillment_retry_scheduled",
                partition=ps.partition,
                order_id=batch.order_id,
                delay=round(decision.delay, 3),
                reason=decision.reason,
                status=decision.status,
                ambiguous=decision.ambiguous,
                attempt=attempt + 1,
            )
        elif isinstance(decision, ParkOrder):
            ps.attempts.pop(batch.order_id, None)
            self._settle(ps, (e.offset for e in decision.already), "already_applied")
            done = {e.offset for e in decision.already}
            ps.lanes.complete(batch)
            rest = [e for e in batch.entries if e.offset not in done] + ps.lanes.take_order(
                batch.order_id
            )
            why = ParkedOrder(decision.reason, decision.status, decision.code, decision.dr_message)
            ps.parked[batch.order_id] = why
            self._park(ps, rest, why)
        else:
            ps.lanes.retry(batch, float("inf"))
            self._halt(decision.reason, EXIT_CONFIGURATION)

    def _watch_outage(self, decision: Decision) -> None:
        """Feed the breaker: only answers about Digital River as a whole count."""
        was_open = self._breaker.is_open
        if (
            isinstance(decision, TryLater)
            and decision.status != 429
            and (decision.status is None or decision.status == 408 or decision.status >= 500)
        ):
            self._breaker.failure(self._clock())
        elif isinstance(decision, Done | ParkOrder):
            self._breaker.success()
        if self._breaker.is_open != was_open:
            _log.warning("circuit_opened" if self._breaker.is_open else "circuit_closed")
            self._metrics.set_circuit_open(self._breaker.is_open)

    def _settle(self, ps: State, offsets: Iterable[int], outcome: SettleOutcome) -> None:
        count = 0
        for offset in offsets:
            ps.settle(offset)
            count += 1
        self.stats.events_settled += count
        if count:
            self._metrics.record_settled(ps.partition, outcome, count)
