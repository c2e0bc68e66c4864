"""The loop: poll -> decode -> lanes -> post -> settle -> commit. [io]

The only module that knows the order of the steps. Threads: the asyncio event loop owns every
piece of state; one Kafka thread makes every confluent-kafka call (consume, commit, pause, poll
the producer). Rebalance callbacks run on the Kafka thread inside `consume()` and hand the work
to the loop, waiting for it (bounded by the drain timeout) before the partitions go.

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

from consumer.codec.avro import EventCodec, SchemaNotFetched
from consumer.config.settings import Settings
from consumer.core.breaker import CircuitBreaker
from consumer.core.budget import TokenBucket, in_flight_cap
from consumer.core.bulk_reconcile import (
    HOLD_SECONDS,
    Coverage,
    FulfillmentListing,
    classify,
    iso_ms,
    window_start,
)
from consumer.core.deadletters import (
    REDRIVEN_HEADER,
    DeadLetterGuard,
    ParkedOrder,
    header_value,
    unparks,
)
from consumer.core.decisions import RetryLater, TripDecision
from consumer.core.dispatch_log import SETTLED, UNSURE
from consumer.core.errors import BadInput, ConfigurationError, RetryableFailure, UnknownSchema
from consumer.core.fulfillments import MAX_EVENTS_PER_REQUEST
from consumer.core.lanes import Batch, CoalescingPolicy, PendingEvent
from consumer.core.lease import MembershipLease
from consumer.core.settle import Settlement, carry_out, effects_of
from consumer.digitalriver.delivery import FulfillmentSender, Trip
from consumer.kafka.changelog import HOUR_MS, AppliedLog
from consumer.kafka.io import (
    KafkaSource,
    KafkaThread,
    SideTopicWriter,
    SourceRecord,
    create_topic,
    topic_partition_count,
)
from consumer.member.allocator import release_free_memory
from consumer.member.aside import AsideWriter
from consumer.member.membership import EngineStats, GroupMembership, State
from consumer.member.schema_wait import SchemaFetcher
from consumer.ops.health import HealthServer
from consumer.ops.metrics import Metrics, SettleOutcome

_log = structlog.get_logger("engine")
CONSUME_BATCH = 500
IDLE_POLL_SECONDS = 0.05
REPORT_INTERVAL_SECONDS = 10.0
FENCED_RETRY_SECONDS = 0.5  # a batch stopped by the lease waits at least this long
EXIT_OK = 0
EXIT_CONFIGURATION = 3  # Digital River (or the schema registry) refused us: fix settings, not data
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
        self._probe: asyncio.Task[None] | None = None
        self._probe_batch: Batch | None = None  # a probe proposed, waiting for its commit
        self._lease = MembershipLease(settings.fencing_lease)
        self._lease_was_valid = False
        self._sender.fence_with(lambda: self._lease.valid(self._clock()))
        self._guard = DeadLetterGuard(max_ratio=settings.dlq_max_ratio)
        self._next_gauges = 0.0
        self._aside = AsideWriter(
            side,
            dlq_topic=settings.dlq_topic,
            parking_topic=settings.parking_topic,
            metrics=metrics,
            settle=lambda ps, offset, outcome: self._settle(ps, (offset,), outcome),
            owned=lambda ps: self._partitions.get(ps.partition) is ps,
            landed=self._parked_landed,
        )
        self._side_reader_config = side_reader_config or {
            "bootstrap.servers": settings.bootstrap_servers
        }
        self._schemas = SchemaFetcher(codec, on_down=self._registry_down, rng=self._rng)
        self._schema_tasks: set[asyncio.Task[None]] = set()
        self._applied = AppliedLog(
            side,
            settings.dedupe_topic,
            window_ms=int(settings.dedupe_window_hours * HOUR_MS),
            reader_config=self._side_reader_config,
        )
        self._kafka_thread = KafkaThread()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._next_commit = 0.0
        self._demands: dict[int, float] = {}
        self._listing = FulfillmentListing()
        self._listing_task: asyncio.Task[None] | None = None
        self._listing_not_before = 0.0
        self._listing_hold_until: float | None = None
        self._next_share = 0.0
        self._next_report = 0.0
        self.stats = EngineStats()

    # -- the loop ----------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> int:
        self._loop = asyncio.get_running_loop()
        self._aside.bind(self._loop)
        self._applied.bind(self._loop)
        self._total_partitions = await self._kafka(self._source.partition_count)
        await self._kafka(self._check_side_topics)
        await self._kafka(self._source.subscribe, self._on_assign, self._on_revoke, self._on_lost)
        _log.info(
            "member_started",
            topic=self._source.topic,
            group=self._settings.group_id,
            group_protocol=self._settings.group_protocol,
        )
        try:
            while not stop.is_set() and self._halted is None:
                commits, covered = self._commit_request()
                if self._lease.lapsed(self._clock()):
                    commits = {**self._proof_commits(), **commits}
                pause, resume = self._backpressure()
                idle = not self._lease.valid(self._clock()) or not any(
                    ps.proposed or ps.lanes.has_work_ready(self._clock())
                    for ps in self._partitions.values()
                )  # without a lease no work can start: no reason to spin
                records, committed, commit_at, consume_at = await self._kafka(
                    self._step, commits, pause, resume, IDLE_POLL_SECONDS if idle else 0.0
                )
                if committed:
                    for ps, batch in self._confirm(commits, covered):
                        self._launch(ps, batch)
                self._renew_lease(bool(commits) and committed, commit_at, consume_at)
                for record in records:
                    self._accept(record)
                self._start_listing()
                self._dispatch_all()
                await self._share_budget()
                self._maybe_report()
                self._publish_gauges()
                if self._health is not None:
                    self._health.mark_alive()
        finally:
            for task in self._schema_tasks:
                task.cancel()  # records waiting for a schema stay unsettled: read again next time
            await self._shutdown()
        return self._exit_code

    def _check_side_topics(self) -> None:
        """Kafka thread, at start: partition p of the parking and changelog topics holds what
        source partition p parked / applied, so they need at least the input's partitions."""
        self._applied.ensure_topic(self._source.topic, self._total_partitions)
        parking = self._settings.parking_topic
        found = topic_partition_count(self._side_reader_config, parking)
        if found == 0:
            create_topic(self._side_reader_config, parking, self._total_partitions, {})
        elif found < self._total_partitions:
            raise ConfigurationError(
                f"{parking} has {found} partitions, fewer than the {self._total_partitions} of "
                f"{self._source.topic}: partition p of it holds what source partition p parked; "
                "add partitions to it (kafka-topics --alter --partitions) or name another topic",
                setting="PARKING_TOPIC",
            )

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

    def _parked_landed(self, ps: State, order_id: str, offset: int) -> None:
        """A parked record of `order_id` is in the parking topic at `offset`."""
        known = ps.parked.get(order_id)
        if known is not None:
            ps.parked[order_id] = dataclasses.replace(
                known, last_offset=max(known.last_offset, offset), unacked=max(0, known.unacked - 1)
            )

    def _publish_gauges(self) -> None:
        now = self._clock()
        if now < self._next_gauges:
            return
        self._next_gauges = now + 1.0
        self._forget_finished_listings()
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
    ) -> tuple[list[SourceRecord], bool, float, float]:
        """Kafka thread: commit (sync), pause/resume, deliver producer callbacks, consume. Also
        when the commit and the consume started: what the membership lease may count from."""
        commit_at = self._clock()
        ok = self._commit_now(commits, "running")
        self._source.pause(pause)
        self._source.resume(resume)
        self._side.poll(0)
        consume_at = self._clock()
        return self._source.consume(CONSUME_BATCH, timeout), ok, commit_at, consume_at

    # -- fencing -------------------------------------------------------------------------------
    def _renew_lease(self, proven: bool, commit_at: float, consume_at: float) -> None:
        """An accepted commit proves membership; a consume only renews a lease still running."""
        if proven:
            self._lease.proven(commit_at)
        self._lease.heard(consume_at)
        valid = self._lease.valid(self._clock())
        if valid != self._lease_was_valid:
            self._lease_was_valid = valid
            if valid:
                _log.info("membership_lease_confirmed", lease_seconds=self._lease.length)
            else:
                _log.warning("membership_lease_lapsed", lease_seconds=self._lease.length)

    def _proof_commits(self) -> dict[int, tuple[int, str]]:
        """After the lease lapsed: commit every owned partition where it stands. The coordinator
        refuses a fenced member's commit, so only a member that still owns them gets through."""
        return {
            p: (offset, self._metadata(ps, offset, with_proposed=False))
            for p, ps in self._partitions.items()
            if not ps.revoking and (offset := ps.commit_offset()) is not None
        }

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
                    "proposed": len(ps.proposed),
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
        ps.undecoded.append(record)
        if len(ps.undecoded) == 1:  # else an earlier record waits for its schema: none overtakes it
            self._decode_waiting(ps)

    def _decode_waiting(self, ps: State) -> None:
        """Decode `ps.undecoded` in offset order, up to a record whose writer schema must be
        fetched first: it and every later record of the partition wait for `_fetch_schema`."""
        while ps.undecoded and self._halted is None:
            record = ps.undecoded[0]
            try:
                decoded = self._codec.decode(record.key, record.value)
            except SchemaNotFetched as missing:
                task = asyncio.create_task(self._fetch_schema(ps, missing.schema_id))
                self._schema_tasks.add(task)
                task.add_done_callback(self._schema_tasks.discard)
                return
            except BadInput as exc:
                ps.undecoded.popleft()
                self._bad_input(ps, record, exc)
                continue
            ps.undecoded.popleft()
            self._guard.record(bad=False)
            self._metrics.record_decoded(ps.partition)
            self._route(ps, record, decoded.event)

    def _bad_input(self, ps: State, record: SourceRecord, exc: BadInput) -> None:
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

    async def _fetch_schema(self, ps: State, schema_id: int) -> None:
        """Fetch the schema the first waiting record needs (through registry outages), then
        decode on. An id the registry does not have dead-letters that record."""

        def owned() -> bool:
            return self._partitions.get(ps.partition) is ps and not ps.revoking

        try:
            if not await self._schemas.fetch(schema_id, wanted=owned):
                return  # the partition went away; the next owner reads its records again
        except UnknownSchema as exc:
            if owned() and ps.undecoded:
                self._bad_input(ps, ps.undecoded.popleft(), exc)
        except ConfigurationError as exc:
            self._halt(str(exc), EXIT_CONFIGURATION)
            return
        except Exception:
            _log.exception("schema_fetch_crashed", partition=ps.partition, schema_id=schema_id)
            await asyncio.sleep(1.0)
        if owned():
            self._decode_waiting(ps)

    def _registry_down(self, reason: str | None) -> None:
        if self._health is not None:
            self._health.set_dependency_down("schema registry", reason)

    def _route(self, ps: State, record: SourceRecord, event: Any) -> None:
        """A decoded record by what the previous owner left (partition.py): skip it, hold it
        for a listing, classify it by the listing, or into its order's lane."""
        unsure = ps.inherited.kind_at(record.offset)
        if unsure == SETTLED:
            # the previous owner settled it past its committed offset: nothing to send
            self.stats.already_applied += 1
            self._settle(ps, (record.offset,), "already_applied")
        elif ps.bulk_held is not None:  # a listing will decide: keep offset order until then
            ps.bulk_held.append((record, event))
        elif ps.bulk_coverage is not None and unsure == UNSURE:
            self._enqueue_listed(ps, record, event, ps.bulk_coverage)
        else:
            self._enqueue(ps, record, event)

    # -- bulk reconciliation (bulk_reconcile.py) -------------------------------------------
    def _forget_finished_listings(self) -> None:
        """A listing's event ids are needed only until every inherited unsure record of its
        partitions has been routed: then they go, and with no partition left waiting for or
        using a listing, the member's merged listing starts afresh (memory follows the unsure)."""
        for ps in self._partitions.values():
            routed = ps.watermark.last_tracked
            done = routed is not None and routed + 1 >= ps.inherited.stop
            if ps.bulk_coverage is not None and done:
                ps.bulk_coverage = None
        busy = any(
            ps.bulk_coverage is not None or ps.bulk_held is not None
            for ps in self._partitions.values()
        )
        if not busy and self._listing_task is None and self._listing.applied:
            self._listing = FulfillmentListing()

    def _start_listing(self) -> None:
        """Partitions holding records for a listing get one (one at a time per member), begun
        now: after their assignment, so it sees whatever their previous owner posted."""
        if self._listing_task is not None or self._halted is not None:
            return
        if self._clock() < self._listing_not_before:
            return
        waiting = [ps for ps in self._partitions.values() if ps.bulk_held is not None]
        if not any(ps.bulk_held for ps in waiting):
            self._listing_hold_until = None
            return
        if any(self._clock() < ps.listing_not_before for ps in waiting):
            return  # a previous owner's POST may still land (reconcile.listing_not_before)
        # one listing for every partition that needs one: wait (briefly) until each has read
        # its first record, whose timestamp bounds the window
        now = self._clock()
        if self._listing_hold_until is None:
            self._listing_hold_until = now + HOLD_SECONDS
        if now < self._listing_hold_until and not all(ps.bulk_held for ps in waiting):
            return
        self._listing_hold_until = None
        now_ms = int(time.time() * 1000)
        since = window_start(
            (r.timestamp_ms for ps in waiting for r, _ in ps.bulk_held or ()), now_ms
        )
        self._listing_task = asyncio.create_task(self._list(waiting, since, now_ms))

    async def _list(self, waiting: list[State], since_ms: int, now_ms: int) -> None:
        pages_before = self._listing.pages
        try:
            coverage = await self._listing.extend(self._sender.list_page, since_ms, now_ms)
        except ConfigurationError as exc:
            self._listing_task = None
            self._halt(str(exc), EXIT_CONFIGURATION)
            return
        except RetryableFailure as exc:
            self._listing_task = None
            self._listing_not_before = self._clock() + (exc.retry_after or 1.0)
            _log.warning("fulfillment_listing_failed", error=str(exc))
            return
        self._listing_task = None
        pages = self._listing.pages - pages_before
        self.stats.reads += pages
        _log.info(
            "fulfillments_listed",
            since=iso_ms(coverage.since_ms),
            pages=pages,
            events_found=len(coverage.applied),
            partitions=sorted(ps.partition for ps in waiting),
        )
        for ps in waiting:
            if self._partitions.get(ps.partition) is not ps or ps.bulk_held is None:
                continue
            held, ps.bulk_held = ps.bulk_held, None
            ps.bulk_coverage = coverage
            for record, event in held:
                if ps.inherited.kind_at(record.offset) == UNSURE:
                    self._enqueue_listed(ps, record, event, coverage)
                else:
                    self._enqueue(ps, record, event)
        self._dispatch_all()

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
        if self._halted is not None:
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

        self._applied.record(ps.partition, order_id, settlement.event_ids, settle)

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
