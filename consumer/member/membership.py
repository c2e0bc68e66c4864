"""Membership of the consumer group: assignment, commits, revocation, shutdown. [io]

The engine's base class. Everything here runs on the event loop, except the rebalance callbacks
(`_on_assign`, `_on_revoke`, `_on_lost`), which confluent-kafka calls on the Kafka thread inside
`consume()`: they hand the work to the loop and wait for it, so a partition's in-flight POSTs are
finished (or abandoned, bounded by DRAIN_TIMEOUT_SECONDS) and its settled offsets committed
before it goes. Each commit carries the partition's dispatch log (partition.py, dispatch_log.py)
and its demand for the rate budget (budget.py).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import random
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog

from consumer.config.settings import Settings
from consumer.core.budget import (
    TokenBucket,
    fair_shares,
    member_share,
    owned_share,
    partition_demand,
)
from consumer.core.commit_metadata import decode as decode_metadata
from consumer.core.deadletters import Headers, ParkedOrder, header_value, parked_orders
from consumer.core.dedupe import SeenFilter
from consumer.core.dispatch_log import UNSURE
from consumer.core.errors import InfrastructureError
from consumer.core.lanes import Batch, CoalescingPolicy
from consumer.core.partition import PartitionState, inherited_log
from consumer.core.reconcile import encode_commit_metadata, listing_not_before
from consumer.kafka.changelog import AppliedLog
from consumer.kafka.reader import read_to_end
from consumer.kafka.records import SourceRecord
from consumer.kafka.source import KafkaSource
from consumer.kafka.thread import KafkaThread
from consumer.kafka.writer import RecordWriter
from consumer.ops.health import HealthServer
from consumer.ops.metrics import Metrics, SettleOutcome

T = TypeVar("T")
State = PartitionState[SourceRecord]
Covered = dict[int, tuple[State, list[Batch]]]  # partition -> (its state, batches a commit lists)
_log = structlog.get_logger("engine")
LEAVE_SECONDS = 10.0


@dataclass
class EngineStats:
    """Counters for progress output and benchmarks (metrics build on these)."""

    records: int = 0
    events_settled: int = 0
    posts: int = 0
    reads: int = 0
    already_applied: int = 0
    duplicates: int = 0  # events whose eventId was applied before (a producer's republish)
    dead_lettered: int = 0
    parked: int = 0
    commits: int = 0


class GroupMembership:
    """State and duties of a member of the group; `Engine` adds what it does with records."""

    _settings: Settings
    _source: KafkaSource
    _side: RecordWriter
    _clock: Callable[[], float]
    _rng: random.Random
    _policy: CoalescingPolicy
    _budget: TokenBucket
    _partitions: dict[int, State]
    _total_partitions: int
    _halted: str | None
    _metrics: Metrics
    _health: HealthServer | None
    _side_reader_config: Mapping[str, Any]
    _kafka_thread: KafkaThread
    _loop: asyncio.AbstractEventLoop | None
    _next_commit: float
    _applied: AppliedLog
    _demands: dict[int, float]  # partition -> demand its owner last published (budget.py)
    _next_share: float
    _in_flight: int  # batches out or proposed, over every partition
    _listing_task: asyncio.Task[None] | None  # a fulfillment listing under way (engine.py)
    stats: EngineStats

    def _settle(self, ps: State, offsets: Iterable[int], outcome: SettleOutcome) -> None:
        raise NotImplementedError

    async def _kafka(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._kafka_thread, fn, *args)

    def _confirm(
        self, commits: dict[int, tuple[int, str]], covered: Covered
    ) -> list[tuple[State, Batch]]:
        """A commit went through: remember it; the batches it listed as unsure may go now."""
        launch: list[tuple[State, Batch]] = []
        for p, (offset, metadata) in commits.items():
            ps = self._partitions.get(p)
            if ps is None:
                continue
            ps.last_committed = offset
            ps.last_metadata = metadata
            self.stats.commits += 1
            owner, batches = covered.get(p, (None, []))
            if owner is ps and batches:
                ps.confirm(batches)
                launch += [(ps, batch) for batch in batches]
        return launch

    # -- commits and backpressure -------------------------------------------------------------
    def _metadata(self, ps: State, offset: int, *, with_proposed: bool = True) -> str:
        log = ps.dispatch_log(offset, with_proposed=with_proposed)
        demand = partition_demand(ps.buffered, self._settings.dr_rate_limit)
        # the time tells a successor when our POSTs can no longer land: only needed while
        # something is unsure
        at_ms = _now_ms() if log.count(UNSURE) else None
        return encode_commit_metadata(log.stop, at_ms, demand=demand, runs=log.encode())

    def _commit_request(self) -> tuple[dict[int, tuple[int, str]], Covered]:
        """Partitions with batches waiting to be listed (now), or whose settled offset, dispatch
        log or demand changed (periodically)."""
        now = self._clock()
        periodic = now >= self._next_commit
        if periodic:
            self._next_commit = now + self._settings.commit_interval
        commits: dict[int, tuple[int, str]] = {}
        covered: Covered = {}
        for p, ps in self._partitions.items():
            offset = ps.commit_offset()
            if offset is None:
                continue
            if ps.proposed:
                covered[p] = (ps, list(ps.proposed))
                commits[p] = (offset, self._metadata(ps, offset))
            elif periodic:
                # compared with the last *confirmed* commit, so a refused one (a rebalance's
                # ILLEGAL_GENERATION) is simply made again on the next pass; a changed log or
                # demand is published even when the offset stands still
                metadata = self._metadata(ps, offset)
                if offset != ps.last_committed or metadata != ps.last_metadata:
                    commits[p] = (offset, metadata)
        return commits, covered

    def _backpressure(self) -> tuple[list[int], list[int]]:
        limit = self._settings.max_buffered_per_partition
        pause, resume = [], []
        for p, ps in self._partitions.items():
            if not ps.paused and ps.buffered >= limit:
                ps.paused = True
                pause.append(p)
            elif ps.paused and ps.buffered <= limit // 2:
                ps.paused = False
                resume.append(p)
        return pause, resume

    # -- rebalances (called on the Kafka thread) ------------------------------------------------
    def _on_assign(self, partitions: list[int]) -> None:
        committed = self._source.committed(partitions)
        ends = self._source.end_offsets(partitions)
        parked = self._parked_at_assignment(partitions, {c.partition: c.offset for c in committed})
        seen = self._applied.load(partitions)  # the event ids these partitions applied lately
        self._call_loop(self._adopt(committed, ends, parked, seen)).result(timeout=30)

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

    def _on_revoke(self, partitions: list[int]) -> None:
        future = self._call_loop(self._release(partitions))
        while not future.done():
            self._side.poll(
                0.05
            )  # deliveries of dead letters / parked records settle while we wait
        self._commit_now(future.result(), "revoke")

    def _on_lost(self, partitions: list[int]) -> None:
        self._call_loop(self._forget(partitions)).result(timeout=30)

    def _call_loop(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    async def _adopt(
        self,
        committed: list[Any],
        ends: dict[int, int],
        parked: dict[int, dict[str, ParkedOrder]],
        seen: Mapping[int, SeenFilter],
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
            ps = PartitionState[SourceRecord](c.partition, self._policy, c.offset, inherited)
            if inherited.count(UNSURE):
                # POSTs of the previous owner may still land: no listing before they cannot
                at = None if found is None else found.at_ms
                wall = listing_not_before(
                    None if at is None else at / 1000, time.time(), self._settings.dr_timeout
                )
                ps.listing_not_before = self._clock() + (wall - time.time())
            ps.parked.update(parked.get(c.partition, {}))
            self._partitions[c.partition] = ps
        self._rebudget()
        if self._health is not None and self._halted is None:
            self._health.set_ready(True)  # joined the group (an empty assignment counts)
        _log.info(
            "partitions_assigned",
            partitions=sorted(c.partition for c in committed),
            committed={c.partition: c.offset for c in committed},
        )

    async def _release(self, partitions: list[int]) -> dict[int, tuple[int, str]]:
        states = [self._partitions[p] for p in partitions if p in self._partitions]
        for ps in states:
            ps.revoking = True
        listing = self._listing_task
        if listing is not None and any(ps.bulk_held for ps in states):
            # what the listing proves applied is settled before we commit: the next owner
            # inherits a shorter range instead of listing it all again
            await asyncio.wait([listing], timeout=self._settings.drain_timeout)
        tasks = [t for ps in states for t in ps.tasks]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self._settings.drain_timeout)
            for task in pending:
                task.cancel()  # abandoned: the log we hand over makes the next owner look first
            if pending:
                await asyncio.wait(pending, timeout=5)
                _log.warning("in_flight_abandoned", count=len(pending))
        commits: dict[int, tuple[int, str]] = {}
        for ps in states:
            self._in_flight -= len(ps.proposed)
            offset = ps.commit_offset()
            if offset is not None:
                # batches still waiting for a commit never went: not unsure for the next owner
                commits[ps.partition] = (offset, self._metadata(ps, offset, with_proposed=False))
            del self._partitions[ps.partition]
            self._applied.forget(ps.partition)
            self._metrics.forget_partition(ps.partition)
        self._rebudget()
        _log.info("partitions_revoked", partitions=sorted(partitions))
        return commits

    async def _forget(self, partitions: list[int]) -> None:
        for p in partitions:
            ps = self._partitions.pop(p, None)
            self._applied.forget(p)
            self._metrics.forget_partition(p)
            if ps is not None:
                self._in_flight -= len(ps.proposed)
                for task in ps.tasks:
                    task.cancel()
        self._rebudget()
        _log.warning("partitions_lost", partitions=sorted(partitions))

    def _rebudget(self) -> None:
        """This member's share: its partitions' fair shares of the group limit, from the demands
        the group last published (budget.py); proportional to partitions until one is known."""
        limit = self._settings.dr_rate_limit
        if self._demands:
            every = dict.fromkeys(range(max(1, self._total_partitions)), 0.0) | self._demands
            share = owned_share(fair_shares(limit, every), self._partitions)
            share = max(share, min(limit, 1e-3))  # a bucket needs a rate > 0; posts need work
        else:
            share = member_share(limit, len(self._partitions), max(1, self._total_partitions))
        self._budget.set_rate(share, self._clock())
        self._metrics.set_budget_rate(share)
        self._metrics.set_rate_limit(limit)

    async def _share_budget(self) -> None:
        """Every commit interval: read the demand every partition's owner published in its
        commit (one OffsetFetch for the whole topic) and take this member's fair share."""
        now = self._clock()
        if now < self._next_share or self._total_partitions <= 0:
            return
        self._next_share = now + self._settings.commit_interval
        try:
            # one quick try: the Kafka thread also runs the loop's commits and fetches
            committed = await self._kafka(
                self._source.committed, range(self._total_partitions), 2.0, 1
            )
        except InfrastructureError as exc:
            _log.warning("demand_read_failed", error=str(exc))
            return  # keep the last share: the commits will be read again next interval
        demands: dict[int, float] = {}
        for c in committed:
            decoded = decode_metadata(c.metadata)
            known = decoded.demand if decoded is not None else None
            demands[c.partition] = known if known is not None else 0.0
        self._demands = demands
        self._rebudget()

    # -- shutdown ------------------------------------------------------------------------------
    async def _shutdown(self) -> None:
        """Stop fetching, drain within the bound, commit what is settled, leave the group."""
        await self._kafka(self._side.flush, 10.0)
        for _ in range(3):
            await asyncio.sleep(0)  # let the delivery callbacks just queued settle their records
        commits = await self._release(list(self._partitions))
        if commits:
            await self._kafka(self._commit_now, commits, "shutdown")
        await self._kafka(self._side.flush, 10.0)
        try:
            left = await asyncio.wait_for(
                self._kafka(self._source.leave, LEAVE_SECONDS), LEAVE_SECONDS + 5
            )
        except TimeoutError:
            left = False
        if not left:
            _log.warning("group_leave_timed_out", seconds=LEAVE_SECONDS)
        self._kafka_thread.shutdown(wait=left)
        _log.info("member_stopped", **vars(self.stats))

    def _commit_now(self, commits: dict[int, tuple[int, str]], when: str) -> bool:
        """Kafka thread: commit (offset, metadata) per partition synchronously; False if refused."""
        if not commits:
            return True
        try:
            self._source.commit(
                {p: o for p, (o, _) in commits.items()},
                metadata={p: m for p, (_, m) in commits.items()},
                sync=True,
            )
        except InfrastructureError as exc:
            _log.warning("offset_commit_failed", when=when, error=str(exc))
            return False
        if when != "running":
            _log.info(
                f"offsets_committed_on_{when}", offsets={p: o for p, (o, _) in commits.items()}
            )
        return True


def _now_ms() -> int:
    return int(time.time() * 1000)
