"""What a member holds per buffered record and per order in flight, measured (issue #13).

- per buffered record: simulated events, encoded as they are on the topic, go the way the engine
  takes them (kept as `SourceRecord`s for the dead-letter and parking topics, tracked by the
  watermark, decoded, queued in their order's lane); Python memory (tracemalloc) over the count.
- per order in flight: that many batches posted at once through the real `FulfillmentSender` and
  `DigitalRiverClient` to a sandbox holding every request `--hold-ms`; Python memory while they
  are all out (tasks, coroutines, requests, connections; the batch's records are counted above).

    .venv/bin/python bench/footprint_bench.py [--records 20000] [--in-flight 256]

RSS is more than the sum: the interpreter and libraries (~60 MiB), librdkafka's fetch queue,
and freed memory the allocators keep.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import time
import tracemalloc

import httpx2

from consumer.codec.avro import default_codec
from consumer.config.settings import Secret
from consumer.core.budget import TokenBucket
from consumer.core.dispatch_log import DispatchLog
from consumer.core.lanes import Batch, CoalescingPolicy, PendingEvent
from consumer.core.outcomes import RetryPolicy
from consumer.core.partition import PartitionState
from consumer.digitalriver.client import DigitalRiverClient
from consumer.digitalriver.delivery import FulfillmentSender
from consumer.kafka.records import SourceRecord
from consumer.ops.logs import configure_logging
from consumer.ops.metrics import Metrics
from consumer.sandbox.config import FaultSettings, SandboxConfig
from consumer.sandbox.server import SandboxServer
from consumer.sandbox.testing import TEST_KEY
from consumer.tools.warehouse.simulator import simulate

KIB = 1024


def per_buffered_record(count: int) -> float:
    codec = default_codec()
    events = simulate(count, 5).events[:count]
    raw = [(e.order_id.encode(), codec.encode_single_object(e)) for e in events]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    ps = PartitionState[SourceRecord](0, CoalescingPolicy(100), None, DispatchLog(0))
    for offset, (key, value) in enumerate(raw):
        record = SourceRecord("warehouse.fulfillment-events", 0, offset, key, value, (), 0)
        ps.watermark.track(offset)
        ps.keep(record, offset)
        ps.lanes.add(offset, codec.decode(key, value).event)
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    mean_value = sum(len(v) for _, v in raw) / len(raw)
    print(
        f"per buffered record: {used / count:,.0f} bytes ({count:,} records of "
        f"{ps.lanes.orders_with_pending:,} orders, Avro value {mean_value:.0f} bytes on average)"
    )
    return used / count


async def per_order_in_flight(count: int, hold_ms: int) -> float:
    config = SandboxConfig(strict_orders=False, faults=FaultSettings(latency_ms=hold_ms))
    with SandboxServer(config) as sandbox:
        dr = DigitalRiverClient(sandbox.url, Secret(TEST_KEY), max_connections=count + 8)
        loop = asyncio.get_running_loop()
        sender = FulfillmentSender(
            dr,
            TokenBucket(rate=1e9, burst=1e9),
            policy=RetryPolicy(),
            clock=loop.time,
            rng=random.Random(1),
            metrics=Metrics(),
        )
        events = simulate(count * 2, 9).events
        first: dict[str, PendingEvent] = {}
        for offset, event in enumerate(events):
            first.setdefault(event.order_id, PendingEvent(offset, event))
        batches = [Batch(0, o, (e,)) for o, e in list(first.items())[:count]]
        await asyncio.gather(*(sender.send(b, 0) for b in batches[:8]))  # warm: imports, pools
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        tasks = [asyncio.create_task(sender.send(b, 0)) for b in batches]
        async with httpx2.AsyncClient(base_url=sandbox.url) as admin:
            deadline = time.monotonic() + hold_ms / 1000
            while time.monotonic() < deadline:
                stats = (await admin.get("/_admin/stats")).json()
                if stats["inFlight"] >= count:
                    break
                await asyncio.sleep(0.02)
        used = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        await asyncio.gather(*tasks)
        await dr.aclose()
    print(
        f"per order in flight: {used / count / KIB:,.1f} KiB ({count} POSTs held {hold_ms} ms; "
        f"{stats['inFlight']} seen in flight at the sandbox)"
    )
    return used / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--in-flight", type=int, default=256)
    parser.add_argument("--hold-ms", type=int, default=8000)
    args = parser.parse_args()
    configure_logging("console", "WARNING")
    record = per_buffered_record(args.records)
    order = asyncio.run(per_order_in_flight(args.in_flight, args.hold_ms))
    print(
        f"so 12 partitions x 5,000 records buffered: {12 * 5000 * record / KIB / KIB:.0f} MiB, "
        f"256 orders in flight: {256 * order / KIB / KIB:.1f} MiB"
    )


if __name__ == "__main__":
    main()
