"""How the group spends Digital River's rate budget (issue #10), on a real broker and a sandbox.

Scenarios (each prints its figures; `--scenario all` runs them one after the other):

- skew: 3 members, key limit 30 requests/s (the sandbox answers 429 above it), 80% of the orders
  on a quarter of the partitions. The group settles first, then the backlog is published.
  Target: POSTs/s >= 0.9 x limit, 429s <= 1% of requests.
- replay: a backlog is applied by one member, then the group's offsets are moved to the earliest
  by Kafka's own tool (a commit with no metadata, as `kafka-consumer-groups --reset-offsets`
  writes), then the group runs again, once per `--replay-members` count (default 1 and 3).
  Target: 0 captures, <= 1 read per 50 events.

Every figure comes from the sandbox's own request log (what Digital River would have seen).

    .venv/bin/python bench/budget_bench.py --scenario skew [--orders 1200] [--limit 30]
    (starts its own broker unless --bootstrap-servers is given)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx2
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from harness import start_broker

from consumer.codec.avro import encode_single_object
from consumer.core.commit_metadata import decode as decode_metadata
from consumer.core.dispatch_log import UNSURE, DispatchLog
from consumer.kafka.admin import GroupAdmin
from consumer.tools.demo import (
    create_topics,
    free_port,
    member_env,
    reconcile,
    sandbox_process,
    sandbox_requests,
    spawn,
)
from consumer.tools.warehouse.simulator import Simulation, seed_sandbox, simulate

# Members use the consumer group protocol (KIP-848), which refuses session / heartbeat keys on
# the client: the local broker's `group.consumer.*` settings give 6 s / 0.5 s instead
# (deploy/kafka/local_kafka.py). Only a classic group needs them here.
FAST_GROUP: dict[str, str] = {}


# -- the world ----------------------------------------------------------------------------------
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


def skewed(
    sim: Simulation, partitions: int, hot: int, hot_share: float, seed: int
) -> dict[str, int]:
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
        """Per partition (committed offset or -1, its metadata); rides out coordinator moves."""
        with GroupAdmin({"bootstrap.servers": self.bootstrap}, self.name, timeout=10) as admin:
            found = admin.committed(self.topic, range(self.partitions))
        return {c.partition: (-1 if c.offset is None else c.offset, c.metadata) for c in found}

    def ends(self) -> dict[int, int]:
        with GroupAdmin({"bootstrap.servers": self.bootstrap}, self.name, timeout=10) as admin:
            marks = admin.watermarks(self.topic, range(self.partitions))
        return {p: high for p, (_low, high) in marks.items()}

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
    steady_post_rate: float = 0.0  # applied POSTs/s over the middle half of the window

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
    applied_at = []
    for r in sandbox_requests(url, after):
        s.last_seq = r["seq"]
        times.append(datetime.fromisoformat(r["receivedAt"]).timestamp())
        if r["method"] == "POST" and r["status"] == 201:
            applied_at.append(times[-1])
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
        start, end = min(times) + s.seconds / 4, max(times) - s.seconds / 4
        inside = sum(1 for t in applied_at if start <= t < end)
        s.steady_post_rate = inside / max(end - start, 1e-9)
    return s


@contextmanager
def seeded_world(
    args: argparse.Namespace,
    bootstrap: str,
    scenario: str,
    *,
    orders: int,
    latency_ms: int,
    **env: str,
) -> Iterator[tuple[Simulation, str, Group]]:
    """A simulation of `orders` orders, a sandbox (`latency_ms`, rate limit `--limit`) seeded
    with them, and a group with no member yet on a new topic; the sandbox stops on exit."""
    sim = simulate(orders, args.seed)
    logs = Path(tempfile.mkdtemp(prefix=f"budget-{scenario}-"))
    with sandbox_process(free_port(), latency_ms=latency_ms, rate_limit=args.limit) as (url, _):
        with httpx2.Client(timeout=60) as client:
            seed_sandbox(url, sim, client)
        topic = f"budget.{uuid.uuid4().hex[:6]}"
        create_topics(bootstrap, topic, args.partitions)
        env = {**FAST_GROUP, **env}
        yield sim, url, Group(bootstrap, topic, f"g-{topic}", args.partitions, url, logs, env, [])


def _limited(args: argparse.Namespace) -> dict[str, str]:
    """The members' DR_RATE_LIMIT: the key's limit, `--limit`, which the group shares."""
    return {"DR_RATE_LIMIT": f"{args.limit:g}"}


# -- scenarios ----------------------------------------------------------------------------------
def scenario_skew(args: argparse.Namespace, bootstrap: str) -> bool:
    with seeded_world(
        args, bootstrap, "skew", orders=args.orders, latency_ms=args.latency_ms, **_limited(args)
    ) as (sim, url, group):
        placed = skewed(sim, args.partitions, args.partitions // 4, 0.8, args.seed)
        for _ in range(args.members):
            group.start()
        wait_until(group.settled, 90, "every member owning its share of the partitions")
        hot = [
            sorted(group.owned(i) & set(range(args.partitions // 4))) for i in range(args.members)
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
    print(
        f"[skew] {published} events of {args.orders} orders, 80% on partitions "
        f"0-{args.partitions // 4 - 1} of {args.partitions}; hot partitions per member: {hot}"
    )
    print(f"[skew] {s.line()}")
    print(
        f"[skew] applied POSTs/s {post_rate:.1f} = {post_rate / args.limit:.2f} x limit "
        f"{args.limit:g} (target >= 0.90; steady middle half {s.steady_post_rate:.1f}/s); "
        f"429s {100 * s.rate_limited / max(1, s.requests):.2f}% "
        f"(target <= 1%); committed in {wall:.1f} s; ledger mismatches {len(r.mismatches)}, "
        f"duplicate events {r.duplicate_events}, exit codes {codes} -> {'PASS' if ok else 'FAIL'}"
    )
    return ok


def reset_to_earliest(group: Group) -> str:
    """Kafka's own `kafka-consumer-groups --reset-offsets --to-earliest --execute` (a commit with
    no metadata); AdminClient's alter_consumer_group_offsets when no Java is at hand."""
    libs = Path.home() / ".cache" / "fulfillment-consumer" / "kafka-4.1.1" / "libs"
    if libs.is_dir() and shutil.which("java"):
        done = subprocess.run(
            [
                "java",
                "-cp",
                f"{libs}/*",
                "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
                "--bootstrap-server",
                group.bootstrap,
                "--group",
                group.name,
                "--topic",
                group.topic,
                "--reset-offsets",
                "--to-earliest",
                "--execute",
            ],
            check=False,
            capture_output=True,
        )
        if done.returncode == 0:  # the broker's jars may not include the tools
            return "kafka-consumer-groups --reset-offsets --to-earliest (ConsumerGroupCommand)"
    admin = AdminClient({"bootstrap.servers": group.bootstrap})
    tps = [TopicPartition(group.topic, p, 0) for p in range(group.partitions)]
    for f in admin.alter_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group.name, tps)]
    ).values():
        f.result(timeout=30)
    return "AdminClient.alter_consumer_group_offsets (no metadata)"


def scenario_replay(args: argparse.Namespace, bootstrap: str) -> bool:
    orders = args.replay_orders
    with seeded_world(
        args, bootstrap, "replay", orders=orders, latency_ms=5, DR_RATE_LIMIT="100000"
    ) as (sim, url, first):
        # apply the backlog first, unthrottled, with one member
        httpx2.put(f"{url}/_admin/faults", json={"rateLimit": 0}, timeout=10).raise_for_status()
        publish_on(bootstrap, first.topic, sim, spread(sim, args.partitions))
        first.start()
        wait_until(first.all_committed, 1800, "the backlog applied")
        first.stop_all()
        applied = spend(url)
        print(
            f"[replay] {len(sim.events)} events of {orders} orders applied first "
            f"({applied.posts_201} POSTs)"
        )
        httpx2.put(
            f"{url}/_admin/faults", json={"rateLimit": args.limit}, timeout=10
        ).raise_for_status()
        verdicts = []
        for members in (int(n) for n in args.replay_members.split(",")):
            verdicts.append(_replay_once(args, first, url, sim, members=members))
    return all(verdicts)


def _replay_once(
    args: argparse.Namespace, first: Group, url: str, sim: Simulation, *, members: int
) -> bool:
    """Reset the group to the earliest offsets with Kafka's tool, replay with `members`."""
    before = spend(url)
    tool = reset_to_earliest(first)
    replay = Group(
        first.bootstrap,
        first.topic,
        first.name,
        first.partitions,
        url,
        first.logs / f"replay-{members}-{uuid.uuid4().hex[:4]}",
        {**FAST_GROUP, **_limited(args)},
        [],
    )
    replay.logs.mkdir()
    started = time.monotonic()
    for _ in range(members):
        replay.start()
    wait_until(replay.all_committed, 900, "the replay committed")
    wall = time.monotonic() - started
    codes = replay.stop_all()
    s = spend(url, before.last_seq)
    r = reconcile(url, sim)
    events = len(sim.events)
    reads = s.reads + s.pages + s.other_reads
    ok = s.posts == 0 and reads * 50 <= events and r.duplicate_events == 0 and not r.mismatches
    print(f"[replay] reset by {tool}; {members} member(s) replay at limit {args.limit:g}")
    print(f"[replay] {s.line()}")
    print(
        f"[replay] settled from the applied-events changelog with no request: "
        f"{replay.member_totals('duplicates')} of {events} events"
    )
    print(
        f"[replay] captures {s.posts} (target 0); reads {reads} = "
        f"{f'1 per {events / reads:.0f} events' if reads else 'none'} "
        f"(target <= 1 per 50 events); replayed in {wall:.1f} s; "
        f"ledger mismatches {len(r.mismatches)}, duplicate events {r.duplicate_events}, "
        f"exit codes {codes} -> {'PASS' if ok else 'FAIL'}"
    )
    return ok


def scenario_join(args: argparse.Namespace, bootstrap: str) -> bool:
    """A backlog, members joining one by one (each join moves partitions), no fault."""
    with seeded_world(
        args, bootstrap, "join", orders=args.orders, latency_ms=args.latency_ms, **_limited(args)
    ) as (sim, url, group):
        publish_on(bootstrap, group.topic, sim, spread(sim, args.partitions))
        for i in range(args.members):
            group.start()
            if i < args.members - 1:
                time.sleep(args.join_every)
        wait_until(group.all_committed, 900, "every event committed")
        codes = group.stop_all()
        s = spend(url)
        r = reconcile(url, sim)
    reads = s.reads + s.pages + s.other_reads
    ok = reads <= 0.01 * s.posts and r.duplicate_events == 0 and not r.mismatches
    print(
        f"[join] {len(sim.events)} events; {args.members} members joining "
        f"{args.join_every:g} s apart"
    )
    print(f"[join] {s.line()}")
    print(
        f"[join] reads {reads} = {100 * reads / max(1, s.posts):.2f}% of POSTs (target <= 1%); "
        f"ledger mismatches {len(r.mismatches)}, duplicate events {r.duplicate_events}, "
        f"exit codes {codes} -> {'PASS' if ok else 'FAIL'}"
    )
    return ok


def unsure_orders(group: Group, partitions: set[int]) -> tuple[int, int]:
    """(unsure offsets, distinct orders among them) the group's commits list now."""
    committed = group.committed()
    wanted: dict[int, set[int]] = {}
    for p in partitions:
        offset, metadata = committed[p]
        decoded = decode_metadata(metadata)
        if decoded is None or offset < 0:
            continue
        log = (
            DispatchLog.decode(offset, decoded.runs)
            if decoded.runs is not None
            else DispatchLog.unsure_range(offset, decoded.horizon)
        )
        if log is None:
            continue
        wanted[p] = {o for a, b, k in log.intervals() if k == UNSURE for o in range(a, b)}
    count = sum(len(v) for v in wanted.values())
    orders: set[bytes] = set()
    c = Consumer({"bootstrap.servers": group.bootstrap, "group.id": f"peek-{uuid.uuid4().hex}"})
    try:
        for p, offsets in wanted.items():
            if not offsets:
                continue
            c.assign([TopicPartition(group.topic, p, min(offsets))])
            last = max(offsets)
            while True:
                msg = c.poll(5)
                if msg is None:
                    break
                if msg.error():
                    continue
                if msg.offset() in offsets and msg.key() is not None:
                    orders.add(msg.key())
                if (msg.offset() or 0) >= last:
                    break
    finally:
        c.close()
    return count, len(orders)


def scenario_kill(args: argparse.Namespace, bootstrap: str) -> bool:
    """kill -9 of a member mid-run: its successor reads at most what it had in flight."""
    with seeded_world(
        args, bootstrap, "kill", orders=args.orders, latency_ms=args.latency_ms, **_limited(args)
    ) as (sim, url, group):
        for _ in range(args.members):
            group.start()
        wait_until(group.settled, 90, "every member owning its share of the partitions")
        publish_on(bootstrap, group.topic, sim, spread(sim, args.partitions))
        time.sleep(args.kill_after)
        victim = group.members[0]
        owned = group.owned(0)
        before = spend(url)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=10)
        unsure, in_flight_orders = unsure_orders(group, owned)
        wait_until(group.all_committed, 900, "every event committed")
        codes = group.stop_all()
        after = spend(url, before.last_seq)
        r = reconcile(url, sim)
    reads = after.reads + after.pages + after.other_reads
    ok = reads <= in_flight_orders and r.duplicate_events == 0 and not r.mismatches
    print(
        f"[kill] {len(sim.events)} events; member 0 (partitions {sorted(owned)}) killed -9 after "
        f"{args.kill_after:g} s; its last commits list {unsure} unsure records of "
        f"{in_flight_orders} orders (what it had in flight)"
    )
    print(f"[kill] before the kill: {before.line()}")
    print(f"[kill] after the kill: {after.line()}")
    print(
        f"[kill] reads after the kill {reads} (target <= {in_flight_orders} orders in flight); "
        f"ledger mismatches {len(r.mismatches)}, duplicate events {r.duplicate_events}, "
        f"exit codes {codes[1:]} -> {'PASS' if ok else 'FAIL'}"
    )
    return ok


SCENARIOS: dict[str, Callable[[argparse.Namespace, str], bool]] = {
    "skew": scenario_skew,
    "join": scenario_join,
    "kill": scenario_kill,
    "replay": scenario_replay,
}


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
    parser.add_argument("--replay-orders", type=int, default=5800, help="~13,000 events")
    parser.add_argument(
        "--replay-members", default="1,3", help="replay once per count, comma-separated"
    )
    parser.add_argument("--join-every", type=float, default=12)
    parser.add_argument("--kill-after", type=float, default=20)
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
    print(
        "budget bench: " + ", ".join(f"{n} {'PASS' if ok else 'FAIL'}" for n, ok in results.items())
    )
    sys.exit(0 if all(results.values()) else 1)


if __name__ == "__main__":
    main()
