"""Throughput of `fulfillment-consumer run` against the naive loop, on one backlog (issue #3).

5,000 simulated orders on 12 partitions, all published before any consumer starts; the sandbox
(its own process, strict seeded orders) answers after `--latency-ms`. In one run:

- baseline: one loop per partition (threads in one process), each doing poll one record ->
  POST -> synchronous commit; measured over `--baseline-seconds` (it is slow by design);
- ours: `--members` `fulfillment-consumer run` processes until every offset is committed.

Between the two the sandbox ledger is reset and re-seeded, so each faces the same orders.
Prints events/s, POSTs/s, events per POST (and the fewest POSTs the backlog allows), consumer
CPU seconds per 1,000 events and milliseconds per POST, the POSTs/s one core could carry at that
cost (POSTs / CPU seconds: the figure to compare on a shared machine, where rates swing with
the load), peak RSS, and per-order order violations. `--max-connections` and `--max-in-flight`
set each member's DR_MAX_CONNECTIONS and MAX_IN_FLIGHT_ORDERS, to try the pool's size.

`--scrape-metrics SECONDS` runs ours twice on the same backlog: without scraping, then while a
thread GETs every member's `/metrics` at that interval (as Prometheus would; members listen on
HEALTH_PORT=0 and the port is read from their `health_listening` log line), to show what the
endpoint costs.

    .venv/bin/python bench/consumer_bench.py [--orders 5000] [--latency-ms 50] [--members 1]
        [--scrape-metrics 1] [--max-connections 64] [--max-in-flight 256]
    (starts its own broker unless --bootstrap-servers is given)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
from confluent_kafka import Consumer, TopicPartition
from harness import start_broker

from consumer.codec.avro import default_codec
from consumer.core.fulfillments import MAX_EVENTS_PER_REQUEST, build_request
from consumer.core.lanes import Batch, CoalescingPolicy, PendingEvent, leading_run
from consumer.tools.demo import (
    create_topics,
    free_port,
    member_env,
    publish_events,
    reconcile,
    sandbox_process,
    spawn,
)
from consumer.tools.warehouse.simulator import Simulation, seed_sandbox, simulate

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Result:
    name: str
    events: int
    seconds: float
    posts: int
    cpu_seconds: float
    peak_rss_mb: float
    violations: int
    duplicates: int

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds


def fewest_posts(sim: Simulation) -> int:
    """POSTs the backlog needs at best: each order's events cut into maximal coalescible runs."""
    per_order: dict[str, deque[PendingEvent]] = {}
    for offset, event in enumerate(sim.events):
        per_order.setdefault(event.order_id, deque()).append(PendingEvent(offset, event))
    policy = CoalescingPolicy(MAX_EVENTS_PER_REQUEST)
    posts = 0
    for lane in per_order.values():
        while lane:
            for _ in range(leading_run(lane, policy)):
                lane.popleft()
            posts += 1
    return posts


def committed_all(bootstrap: str, topic: str, group: str, partitions: int) -> bool:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        ends = [
            c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(partitions)
        ]
        return all(tp.offset == end for tp, end in zip(tps, ends, strict=True))
    finally:
        c.close()


def reset_sandbox(url: str, sim: Simulation) -> None:
    with httpx2.Client(timeout=60) as client:
        client.post(f"{url}/_admin/reset").raise_for_status()
        seed_sandbox(url, sim, client)


def health_port(log: Path, proc: subprocess.Popen[bytes], timeout: float = 60) -> int:
    """The port a member started with HEALTH_PORT=0 logged as `health_listening`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"a member exited before listening; log: {log}")
        if log.exists():
            for line in log.read_text(errors="replace").splitlines():
                if '"health_listening"' in line:
                    return int(json.loads(line)["port"])
        time.sleep(0.05)
    raise SystemExit(f"no health_listening line in {log} after {timeout}s")


@dataclass
class Scraper:
    """GETs every member's /metrics each `interval` seconds on a thread, like Prometheus."""

    interval: float
    scrapes: int = 0
    failures: int = 0
    seconds: float = 0.0  # spent waiting for answers
    bytes: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self, ports: list[int]) -> None:
        self._thread = threading.Thread(target=self._run, args=(ports,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self, ports: list[int]) -> None:
        with httpx2.Client(timeout=5) as http:
            while not self._stop.is_set():
                for port in ports:
                    started = time.monotonic()
                    try:
                        resp = http.get(f"http://127.0.0.1:{port}/metrics")
                        resp.raise_for_status()
                        self.bytes += len(resp.content)
                        self.scrapes += 1
                    except httpx2.HTTPError:
                        self.failures += 1
                    self.seconds += time.monotonic() - started
                self._stop.wait(self.interval)

    def summary(self) -> str:
        mean_ms = 1000 * self.seconds / max(1, self.scrapes + self.failures)
        return (
            f"{self.scrapes} scrapes every {self.interval:g} s ({self.failures} failed), "
            f"{self.bytes / max(1, self.scrapes) / 1024:.1f} KiB each, {mean_ms:.1f} ms mean"
        )


def run_ours(
    args: argparse.Namespace,
    bootstrap: str,
    topic: str,
    url: str,
    sim: Simulation,
    *,
    scrape_every: float | None = None,
) -> Result:
    group = f"bench-ours-{uuid.uuid4().hex[:6]}"
    extra = {"LOG_FORMAT": "json", "HEALTH_PORT": "0"}
    if args.max_connections:
        extra["DR_MAX_CONNECTIONS"] = str(args.max_connections)
    if args.max_in_flight:
        extra["MAX_IN_FLIGHT_ORDERS"] = str(args.max_in_flight)
    env = member_env(bootstrap, topic, group, url, extra)
    logs = Path(tempfile.mkdtemp(prefix="bench-"))
    started = time.monotonic()
    # BENCH_PROFILE=DIR: each member runs under py-spy, which writes DIR/member-N.txt (raw stacks)
    profile = os.environ.get("BENCH_PROFILE")

    def command(i: int) -> list[str]:
        member = [sys.executable, "-m", "consumer", "run"]
        if profile:
            return [
                "py-spy",
                "record",
                "-r",
                "200",
                "-f",
                "raw",
                "-o",
                f"{profile}/member-{i}.txt",
                "--",
                *member,
            ]
        return member

    procs = [spawn(command(i), env, logs / f"member-{i}.log") for i in range(args.members)]
    scraper = None
    if scrape_every is not None:
        scraper = Scraper(scrape_every)
        scraper.start([health_port(logs / f"member-{i}.log", p) for i, p in enumerate(procs)])
    try:
        while not committed_all(bootstrap, topic, group, args.partitions):
            time.sleep(0.2)
            if any(p.poll() is not None for p in procs):
                raise SystemExit(f"a member exited early; logs in {logs}")
    finally:
        if scraper is not None:
            scraper.stop()
    seconds = time.monotonic() - started
    cpu = rss = 0.0
    for p in procs:
        p.send_signal(2) if profile else p.terminate()
        _, _, usage = os.wait4(p.pid, 0)
        cpu += usage.ru_utime + usage.ru_stime
        rss = max(rss, usage.ru_maxrss / 1024)
    r = reconcile(url, sim)
    _print_dedupe_cost(logs, len(sim.events), seconds)
    name = f"run ({args.members} member{'s' if args.members > 1 else ''})"
    if scraper is not None:
        name += f", /metrics every {scraper.interval:g} s"
        print(f"scraping: {scraper.summary()}")
        if scraper.scrapes == 0:
            raise SystemExit(f"--scrape-metrics: no scrape succeeded; logs in {logs}")
    return Result(
        name,
        len(sim.events),
        seconds,
        r.posts,
        cpu,
        rss,
        r.order_violations,
        r.duplicate_events,
    )


def _print_dedupe_cost(logs: Path, events: int, seconds: float) -> None:
    """What exactly-once costs on the happy path: reconcile reads and synchronous horizon commits,
    from each member's `member_stopped` line (its `commits` counts partitions: one commit call
    covers every partition it lists)."""
    reads = commits = 0
    for log in logs.glob("member-*.log"):
        for line in log.read_text(errors="replace").splitlines():
            if '"member_stopped"' in line and line.startswith("{"):
                stopped = json.loads(line)
                reads += int(stopped.get("reads", 0))
                commits += int(stopped.get("commits", 0))
    print(
        f"dedupe on the happy path: {reads} reconcile reads ({1000 * reads / max(1, events):.1f} "
        f"per 1,000 events), {commits} partition offsets committed synchronously "
        f"({commits / max(seconds, 1e-9):.1f}/s)"
    )


def run_baseline(
    args: argparse.Namespace, bootstrap: str, topic: str, url: str, sim: Simulation
) -> Result:
    """The loop most engineers write, one per partition, in a child process we can measure."""
    group = f"bench-baseline-{uuid.uuid4().hex[:6]}"
    cmd = [
        sys.executable,
        __file__,
        "--baseline-worker",
        "--bootstrap-servers",
        bootstrap,
        "--topic",
        topic,
        "--group",
        group,
        "--url",
        url,
        "--partitions",
        str(args.partitions),
        "--baseline-seconds",
        str(args.baseline_seconds),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    out, _ = proc.communicate()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    events, seconds, cpu, rss = out.strip().splitlines()[-1].split()
    _ = before
    r = reconcile(url, sim)
    return Result(
        "baseline (poll 1 -> POST -> commit, x partitions)",
        int(events),
        float(seconds),
        r.posts,
        float(cpu),
        float(rss),
        r.order_violations,
        r.duplicate_events,
    )


def baseline_worker(args: argparse.Namespace) -> None:
    codec = default_codec()
    done = 0
    lock = threading.Lock()
    stop_at = time.monotonic() + args.baseline_seconds

    def loop(partition: int) -> None:
        nonlocal done
        c = Consumer(
            {
                "bootstrap.servers": args.bootstrap_servers,
                "group.id": args.group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        c.assign([TopicPartition(args.topic, partition)])
        with httpx2.Client(
            base_url=args.url, headers={"Authorization": "Bearer sk_test_sandbox"}
        ) as http:
            while time.monotonic() < stop_at:
                msg = c.poll(0.5)
                if msg is None or msg.error():
                    if msg is None and _caught_up(c, args.topic, partition):
                        break
                    continue
                event = codec.decode(msg.key(), msg.value()).event
                body = build_request(
                    Batch(partition, event.order_id, (PendingEvent(msg.offset() or 0, event),))
                )
                http.post("/fulfillments", json=body)
                c.commit(message=msg, asynchronous=False)
                with lock:
                    done += 1
        c.close()

    started = time.monotonic()
    threads = [threading.Thread(target=loop, args=(p,)) for p in range(args.partitions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.monotonic() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(done, seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


def _caught_up(c: Consumer, topic: str, partition: int) -> bool:
    position = c.position([TopicPartition(topic, partition)])[0].offset
    return position >= c.get_watermark_offsets(TopicPartition(topic, partition), timeout=5)[1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=5000)
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--members", type=int, default=1)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--baseline-seconds", type=float, default=30)
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument(
        "--scrape-metrics",
        type=float,
        metavar="SECONDS",
        help="also run ours while scraping every member's /metrics at this interval",
    )
    parser.add_argument(
        "--max-connections", type=int, help="each member's DR_MAX_CONNECTIONS [its default]"
    )
    parser.add_argument(
        "--max-in-flight", type=int, help="each member's MAX_IN_FLIGHT_ORDERS [its default]"
    )
    parser.add_argument("--bootstrap-servers")
    parser.add_argument("--baseline-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    parser.add_argument("--group", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_worker:
        baseline_worker(args)
        return

    broker = None
    bootstrap = args.bootstrap_servers
    if bootstrap is None:
        broker, bootstrap = start_broker(Path(tempfile.mkdtemp(prefix="bench-kafka-")))
    try:
        topic = f"bench.{uuid.uuid4().hex[:6]}"
        create_topics(bootstrap, topic, args.partitions)
        sim = simulate(args.orders, args.seed)
        published = publish_events(bootstrap, topic, sim)
        best = fewest_posts(sim)
        print(
            f"backlog: {published} events of {args.orders} orders on {args.partitions} partitions; "
            f"sandbox latency {args.latency_ms} ms; fewest POSTs the backlog allows: {best} "
            f"({published / best:.2f} events/POST)"
        )
        results = []
        with sandbox_process(free_port(), latency_ms=args.latency_ms) as (url, _):
            if not args.skip_baseline:
                reset_sandbox(url, sim)
                results.append(run_baseline(args, bootstrap, topic, url, sim))
            reset_sandbox(url, sim)
            results.append(run_ours(args, bootstrap, topic, url, sim))
            if args.scrape_metrics is not None:
                reset_sandbox(url, sim)
                results.append(
                    run_ours(args, bootstrap, topic, url, sim, scrape_every=args.scrape_metrics)
                )
        _print(results)
    finally:
        if broker is not None:
            broker.stop()  # type: ignore[attr-defined]


COLUMNS = (
    ("events/s", 9),
    ("POSTs/s", 8),
    ("ev/POST", 8),
    ("CPU s/1k ev", 11),
    ("CPU ms/POST", 11),
    ("1-core POSTs/s", 14),
    ("peak RSS MB", 11),
    ("order viol.", 11),
    ("dup", 4),
)


def _print(results: list[Result]) -> None:
    print(f"{'':52} " + " ".join(f"{name:>{width}}" for name, width in COLUMNS))
    for r in results:
        values = (
            f"{r.events_per_second:.0f}",
            f"{r.posts / r.seconds:.0f}",
            f"{r.events / max(1, r.posts):.2f}",
            f"{1000 * r.cpu_seconds / max(1, r.events):.2f}",
            f"{1000 * r.cpu_seconds / max(1, r.posts):.2f}",
            f"{r.posts / max(r.cpu_seconds, 1e-9):.0f}",
            f"{r.peak_rss_mb:.0f}",
            str(r.violations),
            str(r.duplicates),
        )
        print(
            f"{r.name:52} "
            + " ".join(f"{v:>{w}}" for v, (_, w) in zip(values, COLUMNS, strict=True))
        )
    if len(results) >= 2 and results[0].name.startswith("baseline"):
        ratio = results[1].events_per_second / results[0].events_per_second
        print(f"ratio (ours / baseline events/s): {ratio:.1f}x")
    if len(results) >= 2 and "/metrics" in results[-1].name:
        without, scraped = results[-2], results[-1]
        change = scraped.events_per_second / without.events_per_second - 1
        print(f"scraping /metrics: events/s {100 * change:+.1f}% against the run without")


if __name__ == "__main__":
    main()
