"""Membership of the consumer group: assignment, revocation, loss, shutdown. [io]

`Rebalancer` carries out what a member must do when partitions come and go. Its rebalance
callbacks (`on_assign`, `on_revoke`, `on_lost`) are called by confluent-kafka on the Kafka thread
inside `consume()`: they hand the work to the loop and wait for it, so a partition's in-flight
POSTs are finished (or abandoned, bounded by the drain timeout) and its settled offsets committed
(commits.py) before it goes. A new owner inherits the previous one's dispatch log from the
committed metadata (partition.py), the orders it parked (parking topic) and the event ids it
applied lately (changelog.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from consumer.config.settings import Settings
from consumer.core.commit_metadata import decode as decode_metadata
from consumer.core.commit_plan import Commits
from consumer.core.deadletters import Headers, ParkedOrder, header_value, parked_orders
from consumer.core.dispatch_log import UNSURE
from consumer.core.errors import ConfigurationError
from consumer.core.lanes import CoalescingPolicy
from consumer.core.partition import PartitionState, inherited_log
from consumer.core.reconcile import listing_not_before
from consumer.kafka.admin import create_topic, topic_partition_count
from consumer.kafka.changelog import AppliedLog, Restored
from consumer.kafka.reader import read_to_end
from consumer.kafka.records import SourceRecord
from consumer.kafka.source import KafkaSource
from consumer.kafka.writer import RecordWriter
from consumer.member.bridge import ThreadBridge
from consumer.member.budget_share import BudgetShare
from consumer.member.commits import Committer
from consumer.member.holdings import EngineStats, Holdings
from consumer.member.listing import BulkLister
from consumer.ops.metrics import Metrics

_log = structlog.get_logger("engine")
LEAVE_SECONDS = 10.0


class Rebalancer:
    """Adopts assigned partitions into `held`, releases revoked ones (drain, commit), forgets
    lost ones, and shuts the member down. `joined()` is called once an assignment is adopted."""

    def __init__(
        self,
        settings: Settings,
        source: KafkaSource,
        side: RecordWriter,
        *,
        held: Holdings,
        stats: EngineStats,
        bridge: ThreadBridge,
        committer: Committer,
        budget: BudgetShare,
        lister: BulkLister,
        applied: AppliedLog,
        metrics: Metrics,
        policy: CoalescingPolicy,
        side_reader_config: Mapping[str, Any],
        clock: Callable[[], float],
        joined: Callable[[], None],
    ) -> None:
        self._settings = settings
        self._source = source
        self._side = side
        self._held = held
        self._partitions = held.partitions
        self._stats = stats
        self._bridge = bridge
        self._committer = committer
        self._budget = budget
        self._lister = lister
        self._applied = applied
        self._metrics = metrics
        self._policy = policy
        self._side_reader_config = side_reader_config
        self._clock = clock
        self._joined = joined

    async def join(self) -> None:
        """Learn the topic's partitions, make sure the side topics can hold what each of them
        parks and applies, and subscribe with this rebalancer's callbacks."""
        total = await self._bridge.kafka(self._source.partition_count)
        self._budget.total_partitions = total
        await self._bridge.kafka(
            check_side_topics,
            self._source,
            self._applied,
            self._settings.parking_topic,
            total,
            self._side_reader_config,
        )
        await self._bridge.kafka(
            self._source.subscribe, self.on_assign, self.on_revoke, self.on_lost
        )

    # -- rebalances (called on the Kafka thread) ------------------------------------------------
    def on_assign(self, partitions: list[int]) -> None:
        committed = self._source.committed(partitions)
        ends = self._source.end_offsets(partitions)
        parked = self._parked_at_assignment(partitions, {c.partition: c.offset for c in committed})
        # the event ids these partitions applied lately; exactly, for what may be unsure
        # (a reset or a takeover: [committed, end)), so a replay settles them unread
        suspect = {
            c.partition: (c.offset, ends.get(c.partition, 0))
            for c in committed
            if c.offset is not None
        }
        seen = self._applied.load(partitions, suspect)
        self._bridge.to_loop(self._adopt(committed, ends, parked, seen)).result(timeout=30)

    def _parked_at_assignment(
        self, partitions: list[int], committed: Mapping[int, int | None]
    ) -> dict[int, dict[str, ParkedOrder]]:
        """Orders parked by earlier owners stay parked: rebuilt from the parking topic, whose
        partition p holds what source partition p parked (records parked before parking named
        the partition, by key hash, count only when their parking partition is read too)."""
        if not partitions:
            return {}
        records: dict[int, list[tuple[int, Headers]]] = {p: [] for p in partitions}

        def each(record: SourceRecord) -> None:
            # offsets order records within the source's own parking partition only
            same = header_value(record.headers, "fc.source.partition") == str(record.partition)
            records[record.partition].append((record.offset if same else -1, record.headers))

        read_to_end(
            self._side_reader_config, self._settings.parking_topic, each, partitions=partitions
        )
        every = [r for p in sorted(records) for r in records[p]]
        found = {
            p: parked_orders(every, self._source.topic, p, committed.get(p)) for p in partitions
        }
        if any(found.values()):
            _log.info(
                "parked_orders_restored", orders={p: sorted(o) for p, o in found.items() if o}
            )
        return found

    def on_revoke(self, partitions: list[int]) -> None:
        future = self._bridge.to_loop(self._release(partitions))
        while not future.done():
            self._side.poll(0.05)  # deliveries of dead letters / parked records settle meanwhile
        self._committer.commit_now(future.result(), "revoke")

    def on_lost(self, partitions: list[int]) -> None:
        self._bridge.to_loop(self._forget(partitions)).result(timeout=30)

    # -- the same, on the loop -----------------------------------------------------------------
    async def _adopt(
        self,
        committed: list[Any],
        ends: dict[int, int],
        parked: dict[int, dict[str, ParkedOrder]],
        seen: Restored,
    ) -> None:
        self._applied.install(seen)
        for c in committed:
            found = decode_metadata(c.metadata)
            inherited = inherited_log(
                c.offset,
                None if found is None else found.horizon,
                None if found is None else found.runs,
                ends.get(c.partition, 0),
            )
            ps = PartitionState[SourceRecord](
                c.partition, self._policy, c.offset, inherited, facts=seen.facts.get(c.partition)
            )  # facts: what the changelog proves applied past the commit (applied_facts.py)
            if inherited.count(UNSURE):
                # POSTs of the previous owner may still land: no listing before they cannot
                at = None if found is None else found.at_ms
                wall = listing_not_before(
                    None if at is None else at / 1000, time.time(), self._settings.dr_timeout
                )
                ps.listing_not_before = self._clock() + (wall - time.time())
            ps.parked.update(parked.get(c.partition, {}))
            self._partitions[c.partition] = ps
        self._budget.rebudget()
        self._joined()  # an empty assignment counts
        _log.info(
            "partitions_assigned",
            partitions=sorted(c.partition for c in committed),
            committed={c.partition: c.offset for c in committed},
        )

    async def _release(self, partitions: list[int]) -> Commits:
        states = [self._partitions[p] for p in partitions if p in self._partitions]
        for ps in states:
            ps.revoking = True
        # what a listing proves applied is settled before we commit: the next owner inherits a
        # shorter range instead of listing it all again
        await self._lister.finish(states, self._settings.drain_timeout)
        tasks = [t for ps in states for t in ps.tasks]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self._settings.drain_timeout)
            for task in pending:
                task.cancel()  # abandoned: the log we hand over makes the next owner look first
            if pending:
                await asyncio.wait(pending, timeout=5)
                _log.warning("in_flight_abandoned", count=len(pending))
        commits = self._committer.final(states)
        for ps in states:
            self._held.drop(ps.partition)
            self._applied.forget(ps.partition)
            self._metrics.forget_partition(ps.partition)
        self._budget.rebudget()
        _log.info("partitions_revoked", partitions=sorted(partitions))
        return commits

    async def _forget(self, partitions: list[int]) -> None:
        for p in partitions:
            ps = self._held.drop(p)
            self._applied.forget(p)
            self._metrics.forget_partition(p)
            if ps is not None:
                for task in ps.tasks:
                    task.cancel()
        self._budget.rebudget()
        _log.warning("partitions_lost", partitions=sorted(partitions))

    # -- shutdown ------------------------------------------------------------------------------
    async def shutdown(self) -> None:
        """Stop fetching, drain within the bound, commit what is settled, leave the group."""
        await self._bridge.kafka(self._side.flush, 10.0)
        for _ in range(3):
            await asyncio.sleep(0)  # let the delivery callbacks just queued settle their records
        commits = await self._release(list(self._partitions))
        if commits:
            await self._bridge.kafka(self._committer.commit_now, commits, "shutdown")
        await self._bridge.kafka(self._side.flush, 10.0)
        try:
            left = await asyncio.wait_for(
                self._bridge.kafka(self._source.leave, LEAVE_SECONDS), LEAVE_SECONDS + 5
            )
        except TimeoutError:
            left = False
        if not left:
            _log.warning("group_leave_timed_out", seconds=LEAVE_SECONDS)
        self._bridge.shutdown(wait=left)
        _log.info("member_stopped", **vars(self._stats))


def check_side_topics(
    source: KafkaSource,
    applied: AppliedLog,
    parking: str,
    total_partitions: int,
    reader_config: Mapping[str, Any],
) -> None:
    """Kafka thread, at start: partition p of the parking and changelog topics holds what source
    partition p parked / applied, so they need at least the input's partitions."""
    applied.ensure_topic(source.topic, total_partitions)
    found = topic_partition_count(reader_config, parking)
    if found == 0:
        create_topic(reader_config, parking, total_partitions, {})
    elif found < total_partitions:
        raise ConfigurationError(
            f"{parking} has {found} partitions, fewer than the {total_partitions} of "
            f"{source.topic}: partition p of it holds what source partition p parked; "
            "add partitions to it (kafka-topics --alter --partitions) or name another topic",
            setting="PARKING_TOPIC",
        )
