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
import time
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from consumer.codec.avro import EventCodec, SchemaStore
from consumer.config.settings import Secret, Settings
from consumer.core.decisions import Applied, Park, RetryLater
from consumer.core.dispatch_log import DispatchLog
from consumer.core.lanes import Batch, CoalescingPolicy
from consumer.core.partition import PartitionState
from consumer.core.reconcile import encode_commit_metadata
from consumer.digitalriver.delivery import Trip
from consumer.kafka import admin, changelog, reader, source, writer
from consumer.kafka.records import Committed, SourceRecord
from consumer.member import membership
from consumer.member.engine import Engine
from consumer.ops.metrics import Metrics
from consumer.tools.warehouse.simulator import simulate

PARTITIONS = 3
TOPIC = "fulfillment-events"


class FakeSource:
    """One member's view of a topic held in memory; the Kafka thread calls it, as in production.
    Commits are kept with their metadata, as the group coordinator does: the engine reads them
    back (the demands every partition's owner published) for the budget's fair shares."""

    def __init__(self, records: dict[int, list[SourceRecord]]) -> None:
        self._records = records
        self._position = dict.fromkeys(records, 0)
        self._paused: set[int] = set()
        self._assigned = False
        self._on_assign: Callable[[list[int]], None] | None = None
        # a previous owner committed nothing past 0 but may have posted everything: its dispatch
        # log says every record is unsure, so the member reconciles all of them first
        at_ms = int(time.time() * 1000)
        self._committed = {
            p: Committed(p, 0, encode_commit_metadata(len(r), at_ms, runs=f"u{len(r)}"))
            for p, r in records.items()
        }
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

    def committed(
        self, partitions: Any, timeout: float = 10.0, attempts: int = 1
    ) -> list[Committed]:
        with self._lock:
            return [self._committed[p] for p in partitions]

    def end_offsets(self, partitions: list[int], timeout: float = 10.0) -> dict[int, int]:
        return {p: len(self._records[p]) for p in partitions}

    def cached_end_offsets(self, partitions: list[int]) -> dict[int, int]:
        return self.end_offsets(partitions)

    def commit(
        self, offsets: dict[int, int], *, metadata: Mapping[int, str] | None = None, sync: bool
    ) -> None:
        with self._lock:
            self.committed_offsets.update(offsets)
            for p, offset in offsets.items():
                self._committed[p] = Committed(p, offset, (metadata or {}).get(p))

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
    """The producer of the dead-letter, parking and changelog topics: every record is
    acknowledged (at the next offset of its topic) on the next poll."""

    def __init__(self) -> None:
        self._waiting: list[tuple[str, Callable[[str | None], None], Callable[[int], None]]] = []
        self.produced: dict[str, int] = {}

    def produce(
        self,
        topic: str,
        key: Any,
        value: Any,
        headers: Any,
        on_done: Callable[[str | None], None],
        *,
        partition: int | None = None,
        landed: Callable[[int], None] | None = None,
    ) -> None:
        self._waiting.append((topic, on_done, landed or (lambda _offset: None)))

    def poll(self, timeout: float = 0.0) -> None:
        waiting, self._waiting = self._waiting, []
        for topic, on_done, landed in waiting:
            landed(self.produced.get(topic, 0))
            self.produced[topic] = self.produced.get(topic, 0) + 1
            on_done(None)

    def flush(self, timeout: float) -> int:
        self.poll()
        return 0


class FakeSender:
    """Digital River's answers: an ambiguous failure first for some orders, a permanent refusal
    for others (the order is parked), applied otherwise. Its fulfillment listing names `listed`
    (events it vouches for nothing about: their records are older than the listing's window)."""

    def __init__(self, flaky: set[str], refused: set[str], listed: set[str]) -> None:
        self._flaky, self._refused, self._listed = flaky, refused, listed
        self._may_act: Callable[[], bool] = lambda: True
        self.sent_unsuspected = 0  # batches that went out without being reconciled first
        self.sent_unfenced = 0  # batches that went out without a membership lease
        self.listings = 0

    def fence_with(self, may_act: Callable[[], bool]) -> None:
        self._may_act = may_act

    async def list_page(self, params: Mapping[str, str | int]) -> dict[str, Any]:
        await asyncio.sleep(0)
        self.listings += 1
        metadata = {"fc_events_0": ",".join(sorted(self._listed))}
        return {"data": [{"id": "ful_listed", "metadata": metadata}], "hasMore": False}

    async def send(self, batch: Batch, attempt: int) -> Trip:
        await asyncio.sleep(0)
        if not self._may_act():
            self.sent_unfenced += 1
        if not batch.reconcile_first:
            self.sent_unsuspected += 1
        if batch.order_id in self._refused:
            return Trip(Park("rejected", 400, "invalid_parameter", "no"))
        if batch.order_id in self._flaky and attempt == 0:
            return Trip(RetryLater(0.0, True, "connection_reset", None, systemic=True))
        return Trip(Applied("ful_1", batch.entries))


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
        # suspect orders wait until a previous owner's POSTs can no longer land: keep it short
        dr_timeout=0.2,
        schema_registry=None,
        max_in_flight=16,
        max_buffered_per_partition=max_buffered,
        commit_interval=0.05,
        drain_timeout=5,
        health_port=0,
        log_format="json",
        dlq_max_ratio=0.5,
        dedupe_topic=f"{TOPIC}.applied",
    )


def no_broker(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """What the engine reads from or creates in Kafka besides the source, in memory: the side
    topics (parking, changelog) exist and are empty. Any other client would fail loudly."""
    topics: dict[str, int] = {}

    def partition_count(_config: Any, topic: str, timeout: float = 10.0) -> int:
        return topics.get(topic, 0)

    def create(_config: Any, topic: str, partitions: int, *_a: Any, **_k: Any) -> None:
        topics[topic] = partitions

    def read_nothing(*_a: Any, **_k: Any) -> int:
        return 0

    def refuse(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("this test has no broker: a Kafka client was made")

    for module in (membership, changelog):
        monkeypatch.setattr(module, "topic_partition_count", partition_count)
        monkeypatch.setattr(module, "create_topic", create)
    for module in (membership, changelog):
        monkeypatch.setattr(module, "read_to_end", read_nothing)
    for module, client in (
        (source, "Consumer"),
        (reader, "Consumer"),
        (admin, "Consumer"),
        (admin, "AdminClient"),
        (writer, "Producer"),
    ):
        monkeypatch.setattr(module, client, refuse)
    return topics


def backlog(orders: int, seed: int) -> tuple[dict[int, list[SourceRecord]], list[str]]:
    codec = EventCodec(SchemaStore.load_default())
    sim = simulate(orders, seed)
    records: dict[int, list[SourceRecord]] = {p: [] for p in range(PARTITIONS)}
    for event in sim.events:
        p = hash(event.order_id) % PARTITIONS
        value = codec.encode_single_object(event)
        key = event.order_id.encode()
        # produced long ago (timestamp 1 ms): a listing of Digital River cannot vouch for them,
        # so each unsure record stays suspect and its order is reconciled first
        records[p].append(SourceRecord(TOPIC, p, len(records[p]), key, value, (), 1))
    return records, [o.id for o in sim.orders]


def test_after_a_backlog_of_settled_orders_the_member_holds_no_per_order_state(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    topics = no_broker(monkeypatch)
    records, orders = backlog(orders=600, seed=13)
    rng = random.Random(13)
    flaky = set(rng.sample(orders, 60))
    refused = set(rng.sample(sorted(orders), 40))  # some of them flaky first
    source, side, sender = (
        FakeSource(records),
        FakeSide(),
        FakeSender(flaky, refused, listed={f"evt_from_an_earlier_day_{i}" for i in range(20)}),
    )
    member = settings(max_buffered=200)  # smaller than a partition's backlog: pause/resume happens
    engine = Engine(
        member,
        source,  # type: ignore[arg-type]
        side,  # type: ignore[arg-type]
        lambda _budget: sender,  # type: ignore[arg-type,return-value]
        EventCodec(SchemaStore.load_default()),
        applied=changelog.AppliedLog(
            side,  # type: ignore[arg-type]
            member.dedupe_topic,
            window_ms=int(member.dedupe_window_hours * changelog.HOUR_MS),
            reader_config={"bootstrap.servers": member.bootstrap_servers},
        ),
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
        seen["listing_when_committed"] = len(engine._lister.listing.applied)
        settle_by = asyncio.get_running_loop().time() + 5  # housekeeping runs once a second
        while asyncio.get_running_loop().time() < settle_by and (
            engine._lister.listing.applied
            or any(any(ps.footprint().values()) for ps in engine._partitions.values())
        ):
            await asyncio.sleep(0.05)
        seen["listing"] = len(engine._lister.listing.applied)
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
    assert seen["listing"] == 0, "the member keeps a finished listing's event ids"
    # the scenario is the one described: every record inherited as unsure and reconciled first
    assert sender.listings >= 1, "the unsure range was not listed"
    assert sender.sent_unsuspected == 0, "a record went out without being reconciled first"
    assert sender.sent_unfenced == 0, "a batch went out without a membership lease"
    assert set(topics) == {f"{TOPIC}.applied", f"{TOPIC}.parked"}


def test_a_partition_emptied_after_a_backlog_rebuilds_its_containers_small() -> None:
    """CPython never shrinks a dict's table as keys are deleted: once the backlog is settled the
    containers are new ones, sized for what is held now (nothing)."""
    records, _ = backlog(orders=800, seed=5)
    codec = EventCodec(SchemaStore.load_default())
    ps = PartitionState[SourceRecord](0, CoalescingPolicy(100), None, DispatchLog(0))
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
