"""A member's state is proportional to what is unsettled, not to what it has processed (#13).

The real Engine runs a backlog of many orders through fakes of Kafka (records in, commits out)
and of Digital River (answers chosen per order: applied, retried after an ambiguous failure,
parked). Once every offset is committed the member must hold no per-order or per-offset state:
no lanes, heap entries, suspect marks, attempt counters, buffered records or watermark offsets;
only the orders it parked (by design: later events of a parked order are parked too).
"""

from __future__ import annotations

import asyncio
import random
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest

from consumer import membership
from consumer.codec import EventCodec, SchemaStore
from consumer.config import Secret, Settings
from consumer.delivery import Decision, Done, ParkOrder, TryLater
from consumer.engine import Engine
from consumer.kafka_io import Committed, SourceRecord
from consumer.lanes import Batch, CoalescingPolicy
from consumer.metrics import Metrics
from consumer.partition import PartitionState
from consumer.reconcile import SuspectRange, encode_commit_metadata
from consumer.warehouse.simulator import simulate

PARTITIONS = 3
TOPIC = "fulfillment-events"


class FakeSource:
    """One member's view of a topic held in memory; the Kafka thread calls it, as in production."""

    def __init__(self, records: dict[int, list[SourceRecord]]) -> None:
        self._records = records
        self._position = dict.fromkeys(records, 0)
        self._paused: set[int] = set()
        self._assigned = False
        self._on_assign: Callable[[list[int]], None] | None = None
        self.committed_offsets: dict[int, int] = {}
        self._lock = threading.Lock()

    @property
    def topic(self) -> str:
        return TOPIC

    def partition_count(self) -> int:
        return len(self._records)

    def subscribe(self, on_assign: Any, _on_revoke: Any, _on_lost: Any) -> None:
        self._on_assign = on_assign

    def consume(self, max_records: int, timeout: float) -> list[SourceRecord]:
        if not self._assigned and self._on_assign is not None:
            self._assigned = True
            self._on_assign(list(self._records))
        out: list[SourceRecord] = []
        for p, records in self._records.items():
            if p in self._paused:
                continue
            take = records[self._position[p] : self._position[p] + max_records - len(out)]
            self._position[p] += len(take)
            out += take
        if not out:
            threading.Event().wait(min(timeout, 0.01))
        return out

    def committed(self, partitions: list[int]) -> list[Committed]:
        # a previous owner committed nothing past 0 but may have posted everything: every record
        # is suspect, so the lanes mark orders to reconcile first
        horizon = {p: encode_commit_metadata(len(self._records[p])) for p in partitions}
        return [Committed(p, 0, horizon[p]) for p in partitions]

    def end_offsets(self, partitions: list[int]) -> dict[int, int]:
        return {p: len(self._records[p]) for p in partitions}

    def cached_end_offsets(self, partitions: list[int]) -> dict[int, int]:
        return self.end_offsets(partitions)

    def commit(self, offsets: dict[int, int], *, metadata: Any = None, sync: bool) -> None:
        with self._lock:
            self.committed_offsets.update(offsets)

    def pause(self, partitions: list[int]) -> None:
        self._paused.update(partitions)

    def resume(self, partitions: list[int]) -> None:
        self._paused.difference_update(partitions)

    def leave(self, timeout: float) -> bool:
        return True

    def all_committed(self) -> bool:
        with self._lock:
            return all(
                self.committed_offsets.get(p) == len(records)
                for p, records in self._records.items()
            )


class FakeSide:
    """The dead-letter/parking producer: every record is acknowledged on the next poll."""

    def __init__(self) -> None:
        self._waiting: list[Callable[[str | None], None]] = []
        self.produced = 0

    def produce(
        self, topic: str, key: Any, value: Any, headers: Any, on_done: Any, **_: Any
    ) -> None:
        self._waiting.append(on_done)
        self.produced += 1

    def poll(self, timeout: float = 0.0) -> None:
        waiting, self._waiting = self._waiting, []
        for on_done in waiting:
            on_done(None)

    def flush(self, timeout: float) -> int:
        self.poll()
        return 0


class FakeSender:
    """Digital River's answers: an ambiguous failure first for some orders, a permanent refusal
    for others (the order is parked), applied otherwise."""

    def __init__(self, flaky: set[str], refused: set[str]) -> None:
        self._flaky, self._refused = flaky, refused

    async def send(self, batch: Batch, attempt: int) -> Decision:
        await asyncio.sleep(0)
        if batch.order_id in self._refused:
            return ParkOrder("refused", 400, "invalid_parameter", "no", (), 0)
        if batch.order_id in self._flaky and attempt == 0:
            return TryLater(0.0, True, "connection reset", None, 0)
        return Done(batch.entries, (), "ful_1", 0)


def settings(max_buffered: int) -> Settings:
    return Settings(
        bootstrap_servers="127.0.0.1:1",
        topic=TOPIC,
        group_id="footprint",
        dlq_topic=f"{TOPIC}.dlq",
        parking_topic=f"{TOPIC}.parked",
        dr_api_url="http://127.0.0.1:1",
        dr_api_key=Secret("sk_test_x"),
        dr_rate_limit=1_000_000,
        dr_api_version=None,
        dr_timeout=5,
        schema_registry_url=None,
        max_in_flight=16,
        max_buffered_per_partition=max_buffered,
        commit_interval=0.05,
        drain_timeout=5,
        health_port=0,
        log_format="json",
        dlq_max_ratio=0.5,
    )


def backlog(orders: int, seed: int) -> tuple[dict[int, list[SourceRecord]], list[str]]:
    codec = EventCodec(SchemaStore.load_default())
    sim = simulate(orders, seed)
    records: dict[int, list[SourceRecord]] = {p: [] for p in range(PARTITIONS)}
    for event in sim.events:
        p = hash(event.order_id) % PARTITIONS
        value = codec.encode_single_object(event)
        key = event.order_id.encode()
        records[p].append(SourceRecord(TOPIC, p, len(records[p]), key, value, (), 1))
    return records, [o.id for o in sim.orders]


def test_after_a_backlog_of_settled_orders_the_member_holds_no_per_order_state(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(membership, "read_side_topic", lambda *_a, **_k: [])
    records, orders = backlog(orders=600, seed=13)
    rng = random.Random(13)
    flaky = set(rng.sample(orders, 60))
    refused = set(rng.sample(sorted(orders), 40))  # some of them flaky first
    source, side = FakeSource(records), FakeSide()
    engine = Engine(
        settings(max_buffered=200),  # smaller than a partition's backlog: pause/resume happens
        source,  # type: ignore[arg-type]
        side,  # type: ignore[arg-type]
        lambda _budget: FakeSender(flaky, refused),  # type: ignore[arg-type,return-value]
        EventCodec(SchemaStore.load_default()),
        metrics=Metrics(),
        rng=random.Random(1),
    )
    seen: dict[str, Any] = {}

    async def scenario() -> int:
        stop = asyncio.Event()
        running = asyncio.create_task(engine.run(stop))
        deadline = asyncio.get_running_loop().time() + 120
        while not source.all_committed():
            assert not running.done(), "the member stopped early"
            assert asyncio.get_running_loop().time() < deadline, "backlog not committed in 120 s"
            await asyncio.sleep(0.02)
        seen["partitions"] = {p: ps.footprint() for p, ps in engine._partitions.items()}
        seen["parked"] = {o for ps in engine._partitions.values() for o in ps.parked}
        seen["in_flight"] = engine._in_flight
        stop.set()
        return await running

    assert asyncio.run(scenario()) == 0
    total = sum(len(r) for r in records.values())
    assert engine.stats.events_settled == total, "every event settled exactly once"
    assert len(seen["partitions"]) == PARTITIONS
    for p, footprint in seen["partitions"].items():
        assert footprint == dict.fromkeys(footprint, 0), f"partition {p} still holds {footprint}"
    assert seen["parked"] == refused, "parked orders are the only orders remembered"
    assert seen["in_flight"] == 0


def test_a_partition_emptied_after_a_backlog_rebuilds_its_containers_small() -> None:
    """CPython never shrinks a dict's table as keys are deleted: once the backlog is settled the
    containers are new ones, sized for what is held now (nothing)."""
    records, _ = backlog(orders=800, seed=5)
    codec = EventCodec(SchemaStore.load_default())
    ps = PartitionState[SourceRecord](0, CoalescingPolicy(100), None, SuspectRange(0, 0))
    empty_dict = sys.getsizeof({})
    for record in records[0]:
        ps.watermark.track(record.offset)
        ps.keep(record, record.offset)
        ps.lanes.add(record.offset, codec.decode(record.key, record.value).event)
    grown = sys.getsizeof(ps.records)
    while ps.lanes.pending:
        for batch in ps.lanes.next_batches(0.0, 1000):
            ps.lanes.complete(batch)
            for offset in batch.offsets:
                ps.settle(offset)
    assert grown > 10 * empty_dict
    assert sys.getsizeof(ps.records) == empty_dict
    assert sys.getsizeof(ps.lanes._lanes) == empty_dict
    assert ps.footprint() == dict.fromkeys(ps.footprint(), 0)
