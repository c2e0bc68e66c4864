"""The dedupe filter of a partition is rebuilt from the changelog topic: cost and correctness."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from confluent_kafka import Producer

from consumer.core.dedupe import encode_applied
from consumer.kafka.changelog import HOUR_MS, AppliedLog
from consumer.kafka.writer import RecordWriter

pytestmark = pytest.mark.kafka

ORDERS = 100_000
EVENTS_PER_ORDER = 3


@pytest.mark.slow
def test_a_partition_with_100000_orders_is_restored_in_seconds_and_recognises_every_event(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory(partitions=2, prefix="applied")
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 50, "acks": "all"})
    for order in range(ORDERS):
        for event in range(EVENTS_PER_ORDER):  # one record per event: nothing coalesced
            producer.produce(
                topic,
                key=f"ord_{order}".encode(),
                value=encode_applied([f"evt-{order}-{event}"]),
                partition=1,
            )
        if order % 10_000 == 0:
            producer.poll(0)
    assert producer.flush(120) == 0
    log = AppliedLog(
        RecordWriter({"bootstrap.servers": kafka_bootstrap}),
        topic,
        window_ms=168 * HOUR_MS,
        reader_config={"bootstrap.servers": kafka_bootstrap},
    )

    started = time.monotonic()
    restored = log.load([0, 1])
    seconds = time.monotonic() - started
    log.install(restored)

    ids = [f"evt-{o}-{e}" for o in range(0, ORDERS, 97) for e in range(EVENTS_PER_ORDER)]
    assert log.hits(1, ids) == frozenset(ids), "an applied event was not recognised"
    others = [f"new-{i}" for i in range(20_000)]
    false_hits = len(log.hits(1, others))
    records = ORDERS * EVENTS_PER_ORDER
    print(  # noqa: T201 - the figures are the report
        f"\nrestore: {records} changelog records ({ORDERS} orders) in {seconds:.2f} s; "
        f"filter {log.filter_bytes} bytes ({log.filter_bytes / records:.2f} B/event); "
        f"false hits {false_hits}/{len(others)}"
    )
    assert seconds < 120
    assert log.filter_bytes / records <= 4.1
    assert false_hits / len(others) < 0.001
    assert log.hits(0, ids) == frozenset(), "partition 0 applied nothing"
