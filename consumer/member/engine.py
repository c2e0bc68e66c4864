"""The loop: poll -> decode -> lanes -> post -> settle -> commit. [io]

The only module that knows the order of the steps. Threads: the asyncio event loop owns every
piece of state; one Kafka thread makes every confluent-kafka call (bridge.py). The engine is
composed of collaborators that share what the member holds (holdings.py): records in
(intake.py), the rebalancer (membership.py: assignment, revocation, loss, shutdown), the
committer (commits.py), the budget share (budget_share.py), the bulk lister (listing.py), records
set aside (aside.py) and progress output (progress.py). What to commit and what to pause are
decided in the core (commit_plan.py, backpressure.py).

Guarantees carried out here (PRODUCT.md): per order one POST in flight and offset order (lanes);
commits only over settled records (watermark), periodic while running and synchronous on revoke
and shutdown; bad input to the dead-letter topic; a permanent failure parks the order; 401/403
stop work; and the dispatch log (partition.py) makes crashes and rebalances reconcilable: a batch
is POSTed only once a commit lists it as unsure.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import structlog

from consumer.codec.avro import EventCodec
from consumer.config.settings import Settings
from consumer.core.applied_facts import replay_verdict
from consumer.core.backpressure import apply_backpressure
from consumer.core.breaker import CircuitBreaker
from consumer.core.budget import TokenBucket, in_flight_cap
from consumer.core.bulk_reconcile import Coverage, classify
from consumer.core.commit_plan import Commits
from consumer.core.deadletters import (
    REDRIVEN_HEADER,
    ParkedOrder,
    header_value,
    unparks,
)
from consumer.core.decisions import RetryLater, TripDecision
from consumer.core.dispatch_log import SETTLED, UNSURE
from consumer.core.fulfillments import MAX_EVENTS_PER_REQUEST
from consumer.core.lanes import Batch, CoalescingPolicy, PendingEvent
from consumer.core.settle import Settlement, carry_out, effects_of
from consumer.digitalriver.delivery import FulfillmentSender, Trip
from consumer.kafka.changelog import AppliedLog
from consumer.kafka.records import SourceRecord
from consumer.kafka.source import KafkaSource
from consumer.kafka.thread import KafkaThread
from consumer.kafka.writer import RecordWriter
from consumer.member.aside import AsideWriter
from consumer.member.bridge import ThreadBridge
from consumer.member.budget_share import BudgetShare
from consumer.member.commits import Committer
from consumer.member.fencing import Fencing
from consumer.member.holdings import EngineStats, Holdings, State
from consumer.member.intake import RecordIntake
from consumer.member.listing import BulkLister
from consumer.member.membership import Rebalancer
from consumer.member.progress import ProgressReport
from consumer.member.stop import EXIT_CONFIGURATION, WorkStop
from consumer.ops.health import HealthServer
from consumer.ops.metrics import Metrics, SettleOutcome

_log = structlog.get_logger("engine")
CONSUME_BATCH = 500
IDLE_POLL_SECONDS = 0.05
FENCED_RETRY_SECONDS = 0.5  # a batch stopped by the lease waits at least this long


class Engine:
    """One consumer-group member. `run()` returns EXIT_OK, or why it stopped early:
    EXIT_CONFIGURATION (Digital River refused the key) or EXIT_DEAD_LETTER_LIMIT.

    Built from adapters (cli.py wires the real ones): the source and side topics, the applied
    events' changelog, a Digital River sender made for the member's token bucket, the codec.
    """

    def __init__(
        self,
        settings: Settings,
        source: KafkaSource,
        side: RecordWriter,
        sender_factory: Callable[[TokenBucket], FulfillmentSender],
        codec: EventCodec,
        *,
        applied: AppliedLog,
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
        self._applied = applied
        self._metrics = metrics
        self._health = health
        self._clock = clock
        self._rng = rng or random.Random()
        self._budget = TokenBucket(
            rate=settings.dr_rate_limit, burst=max(1.0, settings.dr_rate_limit / 10)
        )
        self._sender = sender_factory(self._budget)
        self._stop = WorkStop(health)
        self._breaker = CircuitBreaker()
        self._probe: asyncio.Task[None] | None = None
        self._probe_batch: Batch | None = None  # a probe proposed, waiting for its commit
        self._lease = Fencing(settings.fencing_lease)
        self._sender.fence_with(lambda: self._lease.valid(self._clock()))
        # what the member holds, and the collaborators that share it
        self._held = Holdings()
        self._partitions = self._held.partitions
        self.stats = EngineStats()
        self._bridge = ThreadBridge(KafkaThread())
        self._aside = AsideWriter(
            side,
            dlq_topic=settings.dlq_topic,
            parking_topic=settings.parking_topic,
            metrics=metrics,
            settle=lambda ps, offset, outcome: self._settle(ps, (offset,), outcome),
            owned=self._held.owns,
            landed=self._parked_landed,
        )
        self._committer = Committer(settings, source, self._held, self.stats, clock=clock)
        self._shares = BudgetShare(
            settings,
            source,
            self._budget,
            held=self._held,
            bridge=self._bridge,
            metrics=metrics,
            clock=clock,
        )
        self._lister = BulkLister(
            self._held,
            self.stats,
            self._sender.list_page,
            route=self._route,
            dispatch=self._dispatch_all,
            refused=self._stop.refused,
            clock=clock,
        )
        self._rebalancer = Rebalancer(
            settings,
            source,
            side,
            held=self._held,
            stats=self.stats,
            bridge=self._bridge,
            committer=self._committer,
            budget=self._shares,
            lister=self._lister,
            applied=applied,
            metrics=metrics,
            policy=CoalescingPolicy(max_events=min(max_events_per_post, MAX_EVENTS_PER_REQUEST)),
            side_reader_config=side_reader_config
            or {"bootstrap.servers": settings.bootstrap_servers},
            clock=clock,
            joined=self._stop.joined,
        )
        self._intake = RecordIntake(
            self._held,
            self.stats,
            codec,
            self._aside,
            max_bad_ratio=settings.dlq_max_ratio,
            metrics=metrics,
            health=health,
            rng=self._rng,
            route=self._route,
            stop=self._stop,
        )
        self._progress = ProgressReport(
            self._held, self.stats, source, metrics, self._breaker, clock=clock
        )

    @property
    def _in_flight(self) -> int:
        """Batches out or proposed over every partition (holdings.py)."""
        return self._held.in_flight

    @_in_flight.setter
    def _in_flight(self, count: int) -> None:
        self._held.in_flight = count

    # -- the loop ----------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> int:
        loop = asyncio.get_running_loop()
        self._bridge.bind(loop)
        self._aside.bind(loop)
        self._applied.bind(loop)
        await self._rebalancer.join()
        _log.info(
            "member_started",
            topic=self._source.topic,
            group=self._settings.group_id,
            group_protocol=self._settings.group_protocol,
        )
        try:
            while not stop.is_set() and not self._stop.stopped:
                plan = self._committer.plan()
                if self._lease.lapsed(self._clock()):
                    plan = self._committer.with_proof(plan)
                flow = apply_backpressure(
                    self._partitions, self._settings.max_buffered_per_partition
                )
                idle = not self._lease.valid(self._clock()) or not any(
                    ps.proposed or ps.lanes.has_work_ready(self._clock())
                    for ps in self._partitions.values()
                )  # without a lease no work can start: no reason to spin
                records, committed, commit_at, consume_at = await self._bridge.kafka(
                    self._step,
                    plan.commits,
                    flow.pause,
                    flow.resume,
                    IDLE_POLL_SECONDS if idle else 0.0,
                )
                if committed:
                    for ps, batch in self._committer.confirm(plan):
                        self._launch(ps, batch)
                proven = bool(plan.commits) and committed
                self._lease.renew(proven, commit_at, consume_at, self._clock())
                for record in records:
                    self._intake.accept(record)
                if not self._stop.stopped:
                    self._lister.start()
                self._dispatch_all()
                await self._shares.share()
                self._progress.report()
                self._lister.forget_finished()
                self._progress.gauges()
                if self._health is not None:
                    self._health.mark_alive()
        finally:
            self._intake.close()
            await self._rebalancer.shutdown()
        return self._stop.exit_code

    def _step(
        self, commits: Commits, pause: list[int], resume: list[int], timeout: float
    ) -> tuple[list[SourceRecord], bool, float, float]:
        """Kafka thread: commit (sync), pause/resume, deliver producer callbacks, consume. Also
        when the commit and the consume started: what the membership lease may count from."""
        commit_at = self._clock()
        ok = self._committer.commit_now(commits, "running")
        self._source.pause(pause)
        self._source.resume(resume)
        self._side.poll(0)
        consume_at = self._clock()
        return self._source.consume(CONSUME_BATCH, timeout), ok, commit_at, consume_at

    def _halt(self, reason: str, exit_code: int) -> None:
        """Stop work: nothing more is dispatched; the loop ends and shuts down cleanly."""
        self._stop.stop(reason, exit_code)

    def _parked_landed(self, ps: State, order_id: str, offset: int) -> None:
        """A parked record of `order_id` is in the parking topic at `offset`."""
        known = ps.parked.get(order_id)
        if known is not None:
            ps.parked[order_id] = dataclasses.replace(
                known, last_offset=max(known.last_offset, offset), unacked=max(0, known.unacked - 1)
            )

    # -- records in (decoded by intake.py) ----------------------------------------------------
    def _route(self, ps: State, record: SourceRecord, event: Any) -> None:
        """A decoded record by what the previous owner left (partition.py): settle it when the
        changelog names it (applied_facts.py) or the previous owner settled it, hold it for a
        listing, classify it by the listing, or into its order's lane."""
        unsure = ps.inherited.kind_at(record.offset)
        redriven = header_value(record.headers, REDRIVEN_HEADER) is not None
        if replay_verdict(unsure, event.event_id, ps.facts, redriven=redriven) == "duplicate":
            # the applied-events changelog names this event exactly: applied, no request
            self.stats.duplicates += 1
            self._settle(ps, (record.offset,), "duplicate")
        elif unsure == SETTLED:
            # the previous owner settled it past its committed offset: nothing to send
            self.stats.already_applied += 1
            self._settle(ps, (record.offset,), "already_applied")
        elif ps.bulk_held is not None:  # a listing will decide: keep offset order until then
            ps.bulk_held.append((record, event))
        elif ps.bulk_coverage is not None and unsure == UNSURE:
            self._enqueue_listed(ps, record, event, ps.bulk_coverage)
        else:
            self._enqueue(ps, record, event)

    def _enqueue_listed(
        self, ps: State, record: SourceRecord, event: Any, coverage: Coverage
    ) -> None:
        verdict = classify(event.event_id, record.timestamp_ms, coverage)
        if verdict == "applied":
            self.stats.already_applied += 1
            self._settle(ps, (record.offset,), "already_applied")
        else:  # not there when the listing began: post; not covered by it: read first
            self._enqueue(ps, record, event, suspect=verdict == "uncertain")

    def _enqueue(
        self, ps: State, record: SourceRecord, event: Any, *, suspect: bool | None = None
    ) -> None:
        redriven = header_value(record.headers, REDRIVEN_HEADER) is not None
        why = ps.parked.get(event.order_id)
        if redriven and why is not None and unparks(why, record.headers):
            # the order's own first redriven event, from a redrive that took all it had parked
            del ps.parked[event.order_id]
            _log.info("order_unparked", partition=ps.partition, order_id=event.order_id)
        if event.order_id in ps.parked:
            self._park(ps, [PendingEvent(record.offset, event)], ps.parked[event.order_id])
            return
        if suspect is None:
            suspect = ps.inherited.kind_at(record.offset) == UNSURE
        suspect = suspect or redriven
        ps.lanes.add(record.offset, event, suspect=suspect)

    def _park(self, ps: State, entries: list[PendingEvent], why: ParkedOrder) -> None:
        if not entries:
            return
        self.stats.parked += len(entries)
        order_id = entries[0].event.order_id
        known = ps.parked.get(order_id, why)
        ps.parked[order_id] = dataclasses.replace(known, unacked=known.unacked + len(entries))
        self._aside.park(ps, [ps.records[e.offset] for e in entries], entries, why)

    # -- dispatch ------------------------------------------------------------------------------
    def _dispatch_all(self) -> None:
        if self._stop.stopped:
            return
        now = self._clock()
        if not self._lease.valid(now):
            return  # we may have lost our partitions: nothing new starts until Kafka confirms
        if self._breaker.is_open:
            self._dispatch_probe(now)
            return
        states = list(self._partitions.values())
        self._rng.shuffle(states)  # no partition is always first in line
        cap = in_flight_cap(self._budget.rate, self._settings.max_in_flight)
        for ps in states:
            free = cap - self._in_flight
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
                self._probe, self._probe_batch = None, None
                for batch in ps.lanes.next_batches(now, 1):
                    self._probe = self._start(ps, batch)
                    if self._probe is None and ps.proposed and ps.proposed[-1] is batch:
                        self._probe_batch = batch  # goes out with the next confirmed commit
                if self._probe is None and self._probe_batch is None:
                    self._breaker.probe_ended(now)  # nothing went out after all
            return

    def _start(self, ps: State, batch: Batch) -> asyncio.Task[None] | None:
        """Counted in flight from now; POSTed once a confirmed commit lists it as unsure (the
        task, when that is already so; else None). A suspect order is not looked up while a
        previous owner's POST may still land (reconcile.listing_not_before): it waits in its
        lane."""
        if batch.reconcile_first and self._clock() < ps.listing_not_before:
            ps.lanes.retry(batch, ps.listing_not_before)
            return None
        self._in_flight += 1
        if ps.covers(batch):
            return self._launch(ps, batch)
        ps.proposed.append(batch)
        return None

    def _launch(self, ps: State, batch: Batch) -> asyncio.Task[None]:
        attempt = ps.attempts.get(batch.order_id, 0)
        task = asyncio.create_task(self._deliver(ps, batch, attempt))
        ps.tasks.add(task)
        task.add_done_callback(ps.tasks.discard)
        if batch is self._probe_batch:  # the probe waited for its commit: it goes out now
            self._probe_batch = None
            self._probe = task
        return task

    async def _deliver(self, ps: State, batch: Batch, attempt: int) -> None:
        # asked when the batch goes out, so an original applied just before its duplicate counts
        hits = self._applied.hits(ps.partition, batch.event_ids)
        sent = batch
        if hits and not batch.reconcile_first:
            sent = dataclasses.replace(batch, reconcile_first=True)
        try:
            try:
                trip = await self._sender.send(sent, attempt)
            except asyncio.CancelledError:
                self._in_flight -= 1
                raise
            except Exception:
                _log.exception("delivery_crashed", partition=ps.partition, order_id=batch.order_id)
                # counted as systemic: a crash on every trip gets probes, not a storm
                trip = Trip(RetryLater(1.0, True, "internal_error", None, True))
            self._in_flight -= 1
            self._carry_out(ps, batch, attempt, trip, hits if sent is not batch else frozenset())
        finally:
            if self._probe is not None and self._probe is asyncio.current_task():
                # every probe's end is reported: answered, cancelled, revoked, lost or fenced
                self._probe = None
                self._breaker.probe_ended(self._clock())
        self._dispatch_all()

    def _carry_out(
        self,
        ps: State,
        batch: Batch,
        attempt: int,
        trip: Trip,
        duplicates: frozenset[str] = frozenset(),
    ) -> None:
        """What the trip decided, made true (settle.py decides what changes)."""
        if self._partitions.get(ps.partition) is not ps:
            return  # the partition went away while this batch was out
        decision = trip.decision
        self.stats.reads += trip.reads
        self._watch_outage(decision)
        effects = effects_of(
            decision,
            batch,
            duplicates=duplicates,
            now=self._clock(),
            fenced_wait=FENCED_RETRY_SECONDS,
        )
        to_park = carry_out(effects, ps, batch, attempt)
        self.stats.posts += effects.posts
        if effects.settle is not None:
            self._applied_now(ps, batch.order_id, effects.settle)
        if isinstance(decision, RetryLater):
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
        if effects.parked is not None:
            self._park(ps, list(to_park), effects.parked)
        if effects.halt is not None:
            self._halt(effects.halt, EXIT_CONFIGURATION)

    def _applied_now(self, ps: State, order_id: str, settlement: Settlement) -> None:
        """Record the events in the changelog; settle them once it has them (a committed event
        is always in the changelog)."""
        self.stats.already_applied += len(settlement.already_applied)
        self.stats.duplicates += len(settlement.duplicate)

        def settle() -> None:
            if self._partitions.get(ps.partition) is not ps:
                return  # revoked meanwhile: the next owner reconciles these records
            self._settle(ps, settlement.applied, "applied")
            self._settle(ps, settlement.already_applied, "already_applied")
            self._settle(ps, settlement.duplicate, "duplicate")

        # the offsets let a replay settle these events unread (applied_facts.py)
        self._applied.record(
            ps.partition, order_id, settlement.event_ids, settle, settlement.event_offsets
        )

    def _watch_outage(self, decision: TripDecision) -> None:
        """Feed the breaker: only answers about Digital River as a whole count (breaker.py)."""
        was_open = self._breaker.is_open
        self._breaker.observe(decision, self._clock())
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
