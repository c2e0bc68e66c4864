"""How the group spends Digital River's rate budget (issue #10), on a real broker and a sandbox.

Scenarios (each prints its figures; `--scenario all` runs them one after the other):

- skew: 3 members, key limit 30 requests/s (the sandbox answers 429 above it), 80% of the orders
  on a quarter of the partitions. The group settles first, then the backlog is published.
  Target: POSTs/s >= 0.9 x limit, 429s <= 1% of requests.
- replay: a backlog is applied by one member, then the group's offsets are moved to the earliest
  by Kafka's own tool (a commit with no metadata, as `kafka-consumer-groups --reset-offsets`
  writes), then the group runs again. Target: 0 captures, <= 1 read per 50 events.

Every figure comes from the sandbox's own request log (what Digital River would have seen).

    .venv/bin/python bench/budget_bench.py --scenario skew [--orders 1200] [--limit 30]
    (starts its own broker unless --bootstrap-servers is given)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from consumer.codec import encode_single_object
from consumer.demo import create_topics, member_env, reconcile, sandbox_process, free_port, spawn
from consumer.warehouse.simulator import Simulation, seed_sandbox, simulate

ROOT = Path(__file__).resolve().parents[1]
FAST_GROUP = {"KAFKA_SESSION_TIMEOUT_MS": "6000", "KAFKA_HEARTBEAT_INTERVAL_MS": "500"}


# -- the world ----------------------------------------------------------------------------------
def start_broker(workdir: Path) -> tuple[Any, str]:
    spec = importlib.util.spec_from_file_location(
        "local_kafka", ROOT / "deploy" / "kafka" / "local_kafka.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["local_kafka"] = module
    spec.loader.exec_module(module)
    broker = module.LocalBroker(workdir, module.free_port(), module.free_port())
    broker.start()
    return broker, broker.bootstrap


def publish_on(bootstrap: str, topic: str, sim: Simulation, partition_of: dict[str, int]) -> int:
    """Every event of an order to the partition chosen for it (explicitly, no hashing)."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 20}
    )
    for event in sim.events:
        producer.produce(
            topic,
            value=encode_single_object(event),
            key=event.order_id.encode(),
            partition=partition_of[event.order_id],
        )
        producer.poll(0)
    if producer.flush(60) != 0:
        raise SystemExit("publishing did not finish")
    return len(sim.events)


def skewed(sim: Simulation, partitions: int, hot: int, hot_share: float, seed: int) -> dict[str, int]:
    """`hot_share` of the orders on the first `hot` partitions, the rest on the others."""
    rng = random.Random(seed)
    placed = {}
    for order in sim.orders:
        if rng.random() < hot_share:
            placed[order.id] = rng.randrange(hot)
        else:
            placed[order.id] = hot + rng.randrange(partitions - hot)
    return placed


def spread(sim: Simulation, partitions: int) -> dict[str, int]:
    return {order.id: i % partitions for i, order in enumerate(sim.orders)}


@dataclass
class Group:
    bootstrap: str
    topic: str
    name: str
    partitions: int
    url: str
    logs: Path
    env: dict[str, str]
    members: list[subprocess.Popen[bytes]]

    def start(self) -> subprocess.Popen[bytes]:
        env = member_env(self.bootstrap, self.topic, self.name, self.url, self.env)
        log = self.logs / f"member-{len(self.members)}.log"
        proc = spawn([sys.executable, "-m", "consumer", "run"], env, log)
        self.members.append(proc)
        return proc

    def committed(self) -> dict[int, tuple[int, str | None]]:
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.name})
        try:
            tps = [TopicPartition(self.topic, p) for p in range(self.partitions)]
            for attempt in range(20):
                try:
                    found = c.committed(tps, timeout=10)
                    return {tp.partition: (tp.offset, tp.metadata) for tp in found}
                except KafkaException:
                    if attempt == 19:
                        raise
                    time.sleep(0.5)
            raise AssertionError("unreachable")
        finally:
            c.close()

    def ends(self) -> dict[int, int]:
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.name})
        try:
            return {
                p: c.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10)[1]
                for p in range(self.partitions)
            }
        finally:
            c.close()

    def all_committed(self) -> bool:
        ends = self.ends()
        return all(o == ends[p] for p, (o, _) in self.committed().items())

    def owned(self, index: int) -> set[int]:
        owned: set[int] = set()
        log = self.logs / f"member-{index}.log"
        for line in log.read_text(errors="replace").splitlines() if log.exists() else []:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if not isinstance(entry, dict):
                continue
            if entry.get("event") == "partitions_assigned":
                owned |= set(entry["partitions"])
            elif entry.get("event") in ("partitions_revoked", "partitions_lost"):
                owned -= set(entry["partitions"])
        return owned

    def settled(self) -> bool:
        owned = [self.owned(i) for i in range(len(self.members))]
        each = self.partitions // len(self.members)
        return all(len(o) == each for o in owned) and len(set().union(*owned)) == self.partitions

    def stop_all(self) -> list[int]:
        for m in self.members:
            if m.poll() is None:
                m.terminate()
        return [m.wait(timeout=60) for m in self.members]

    def member_totals(self, key: str) -> int:
        total = 0
        for log in self.logs.glob("member-*.log"):
            for line in log.read_text(errors="replace").splitlines():
                if '"member_stopped"' in line and line.startswith("{"):
                    total += int(json.loads(line).get(key, 0))
        return total


def wait_until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.25)


def requests_of(url: str, after: int = 0) -> Iterator[dict[str, Any]]:
    while True:
        page = httpx.get(f"{url}/_admin/requests", params={"after": after}, timeout=60).json()
        rows = page["requests"]
        if not rows:
            return
        yield from rows
        after = rows[-1]["seq"]


@dataclass
class Spend:
    """What the sandbox saw over a window of requests."""

    posts: int = 0
    posts_201: int = 0
    reads: int = 0  # GET /fulfillments?orderId= (one order's fulfillments)
    pages: int = 0  # GET /fulfillments by createdTime window (bulk listing)
    other_reads: int = 0
    rate_limited: int = 0
    seconds: float = 0.0
    last_seq: int = 0

    @property
    def requests(self) -> int:
        return self.posts + self.reads + self.pages + self.other_reads

    def line(self) -> str:
        return (
            f"{self.requests} requests in {self.seconds:.1f} s: {self.posts} POST "
            f"({self.posts_201} applied), {self.reads} per-order reads, {self.pages} listing "
            f"pages, {self.other_reads} other reads; {self.rate_limited} answered 429 "
            f"({100 * self.rate_limited / max(1, self.requests):.2f}%)"
        )


def spend(url: str, after: int = 0) -> Spend:
    s = Spend(last_seq=after)
    times = []
    for r in requests_of(url, after):
        s.last_seq = r["seq"]
        times.append(datetime.fromisoformat(r["receivedAt"]).timestamp())
        if r["status"] == 429:
            s.rate_limited += 1
        if r["method"] == "POST":
            s.posts += 1
            s.posts_201 += r["status"] == 201
        elif r["path"] == "/fulfillments" and "orderId=" in (r.get("query") or ""):
            s.reads += 1
        elif r["path"] == "/fulfillments":
            s.pages += 1
        else:
            s.other_reads += 1
    if times:
        s.seconds = max(times) - min(times)
    return s


def new_group(args: argparse.Namespace, bootstrap: str, url: str, logs: Path, **env: str) -> Group:
    topic = f"budget.{uuid.uuid4().hex[:6]}"
    create_topics(bootstrap, topic, args.partitions)
    return Group(
        bootstrap, topic, f"g-{topic}", args.partitions, url, logs, {**FAST_GROUP, **env}, []
    )


# -- scenarios ----------------------------------------------------------------------------------
def scenario_skew(args: argparse.Namespace, bootstrap: str) -> bool:
    sim = simulate(args.orders, args.seed)
    placed = skewed(sim, args.partitions, args.partitions // 4, 0.8, args.seed)
    logs = Path(tempfile.mkdtemp(prefix="budget-skew-"))
    with sandbox_process(free_port(), latency_ms=args.latency_ms, rate_limit=args.limit) as url:
        with httpx.Client(timeout=60) as client:
            seed_sandbox(url, sim, client)
        group = new_group(args, bootstrap, url, logs, DR_RATE_LIMIT=f"{args.limit:g}")
        for _ in range(args.members):
            group.start()
        wait_until(group.settled, 90, "every member owning its share of the partitions")
        hot = [
            sorted(group.owned(i) & set(range(args.partitions // 4)))
            for i in range(args.members)
        ]
        published = publish_on(bootstrap, group.topic, sim, placed)
        started = time.monotonic()
        wait_until(group.all_committed, 900, "every event committed")
        wall = time.monotonic() - started
        codes = group.stop_all()
        s = spend(url)
        r = reconcile(url, sim)
    post_rate = s.posts_201 / max(s.seconds, 1e-9)
    ok = (
        post_rate >= 0.9 * args.limit
        and s.rate_limited <= 0.01 * s.requests
        and not r.mismatches
        and r.duplicate_events == 0
    )
    print(f"[skew] {published} events of {args.orders} orders, 80% on partitions "
          f"0-{args.partitions // 4 - 1} of {args.partitions}; hot partitions per member: {hot}")
    print(f"[skew] {s.line()}")
    print(
        f"[skew] applied POSTs/s {post_rate:.1f} = {post_rate / args.limit:.2f} x limit "
        f"{args.limit:g} (target >= 0.90); 429s {100 * s.rate_limited / max(1, s.requests):.2f}% "
        f"(target <= 1%); committed in {wall:.1f} s; ledger mismatches {len(r.mismatches)}, "
        f"duplicate events {r.duplicate_events}, exit codes {codes} -> {'PASS' if ok else 'FAIL'}"
    )
    return ok


SCENARIOS: dict[str, Callable[[argparse.Namespace, str], bool]] = {"skew": scenario_skew}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    parser.add_argument("--orders", type=int, default=1200)
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--limit", type=float, default=30)
    parser.add_argument("--latency-ms", type=int, default=20)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--bootstrap-servers")
    args = parser.parse_args()
    broker = None
    bootstrap = args.bootstrap_servers
    if bootstrap is None:
        broker, bootstrap = start_broker(Path(tempfile.mkdtemp(prefix="budget-kafka-")))
    try:
        names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
        results = {name: SCENARIOS[name](args, bootstrap) for name in names}
    finally:
        if broker is not None:
            broker.stop()
    print("budget bench: " + ", ".join(f"{n} {'PASS' if ok else 'FAIL'}" for n, ok in results.items()))
    sys.exit(0 if all(results.values()) else 1)


if __name__ == "__main__":
    main()
