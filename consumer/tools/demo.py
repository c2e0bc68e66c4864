"""`fulfillment-consumer demo`: the whole journey on this machine, with visible progress.

simulator -> publisher -> Kafka -> N consumer members (`run` subprocesses) -> sandbox, then a
reconciliation of the sandbox's ledger against what was published. A tool: the service never
imports it. Its pieces (topics, the sandbox process, members, publishing, the reconciliation)
are reused by the benchmarks and the integration tests' group harness.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import httpx2
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from consumer.codec.avro import EventCodec, SchemaStore
from consumer.core.errors import InfrastructureError
from consumer.core.fulfillments import event_ids_of
from consumer.kafka.admin import GroupAdmin, create_topic
from consumer.kafka.configs import producer_config
from consumer.kafka.writer import RecordWriter
from consumer.tools.options import infrastructure_errors_reported
from consumer.tools.warehouse.publisher import Publisher, SourceLine
from consumer.tools.warehouse.simulator import Simulation, expected_ledger, seed_sandbox, simulate

SANDBOX_KEY = "sk_test_sandbox"


class DemoFailed(InfrastructureError):
    """A piece of the demo could not do its part (the sandbox did not start, events were not
    delivered); `demo` reports it and exits 1."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def create_topics(bootstrap: str, topic: str, partitions: int) -> None:
    """The input, dead-letter and parking topics (InfrastructureError if the brokers refuse)."""
    for name in (topic, f"{topic}.dlq", f"{topic}.parked"):
        create_topic({"bootstrap.servers": bootstrap}, name, partitions, {}, replication_factor=1)


def publish_events(bootstrap: str, topic: str, simulation: Simulation) -> int:
    codec = EventCodec(SchemaStore.load_default())
    cluster = {
        "bootstrap.servers": bootstrap,
        "linger.ms": 20,
        # a fresh broker loads its transaction coordinator a moment after it serves: librdkafka
        # retries on its own; its warning about it would only alarm a first-time user
        "log_level": 3,
    }
    writer = RecordWriter(producer_config(cluster, logs=False))
    publisher = Publisher(writer, topic, codec.encode_single_object)
    report = publisher.publish(SourceLine(i + 1, e) for i, e in enumerate(simulation.events))
    if report.exit_code != 0:
        raise DemoFailed(f"publishing failed: {report.summary()}")
    return len(simulation.events)


@contextmanager
def sandbox_process(
    port: int,
    *,
    latency_ms: float,
    strict: bool = True,
    rate_limit: float = 0,
    log_path: Path | None = None,
    ready_within: float = 30,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The sandbox as its own process (its own core): yields its URL and the process (for its
    pid) once it answers; DemoFailed unless it does within `ready_within` s. Terminated on exit."""
    args = [
        sys.executable,
        "-m",
        "consumer",
        "sandbox",
        "--port",
        str(port),
        "--latency-ms",
        str(latency_ms),
        "--rate-limit",
        str(rate_limit),
        "--strict" if strict else "--lenient",
    ]
    proc = spawn(args, None, log_path)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_within
        while True:
            try:
                httpx2.get(f"{url}/_admin/stats", timeout=1).raise_for_status()
                break
            except httpx2.HTTPError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    where = f"; log: {log_path}" if log_path is not None else ""
                    raise DemoFailed(f"the sandbox did not start{where}") from None
                time.sleep(0.1)
        yield url, proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)  # a sandbox that served a long run takes a while to stop


def member_env(
    bootstrap: str, topic: str, group: str, dr_url: str, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "DR_"))}
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "FULFILLMENT_TOPIC": topic,
            "CONSUMER_GROUP": group,
            "DR_API_URL": dr_url,
            "DR_API_KEY": SANDBOX_KEY,
            "DR_RATE_LIMIT": "100000",
            "LOG_FORMAT": "json",
            "HEALTH_PORT": "0",
        }
    )
    env.update(extra or {})
    return env


def spawn(
    args: list[str], env: Mapping[str, str] | None, log_path: Path | None
) -> subprocess.Popen[bytes]:
    """A child process whose stdout and stderr go to `log_path` (or nowhere)."""
    if log_path is None:
        return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with log_path.open("wb") as log:  # the child keeps its own handle
        return subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)


def start_member(env: Mapping[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    return spawn([sys.executable, "-m", "consumer", "run"], env, log_path)


def stop_members(members: list[subprocess.Popen[bytes]], timeout: float = 40) -> list[int]:
    for m in members:
        if m.poll() is None:
            m.send_signal(signal.SIGTERM)
    return [m.wait(timeout=timeout) for m in members]


def group_lag(bootstrap: str, topic: str, group: str, partitions: int) -> tuple[int, int]:
    """(records committed, records in the topic) summed over partitions."""
    with GroupAdmin({"bootstrap.servers": bootstrap}, group, timeout=10) as admin:
        committed = admin.committed(topic, range(partitions))
        marks = admin.watermarks(topic, range(partitions))
    done = total = 0
    for c in committed:
        low, high = marks[c.partition]
        total += high - low
        done += 0 if c.offset is None else max(0, c.offset - low)
    return done, total


@dataclass
class Reconciliation:
    orders: int = 0
    orders_matching: int = 0
    mismatches: list[str] = field(default_factory=list)
    posts: int = 0
    events_posted: int = 0
    order_violations: int = 0
    duplicate_events: int = 0


def reconcile(sandbox_url: str, simulation: Simulation) -> Reconciliation:
    """The sandbox's ledger against what was published; arrival order per order against offsets."""
    ledger = httpx2.get(f"{sandbox_url}/_admin/ledger", timeout=60).json()["orders"]
    result = Reconciliation()
    for order_id, lines in expected_ledger(simulation).items():
        result.orders += 1
        actual = ledger.get(order_id, {}).get("lines", {})
        wrong = [
            f"{order_id}/{item}: expected {exp}, got ({actual.get(item, {}).get('captured', 0)}, "
            f"{actual.get(item, {}).get('cancelled', 0)})"
            for item, exp in lines.items()
            if (actual.get(item, {}).get("captured", 0), actual.get(item, {}).get("cancelled", 0))
            != exp
        ]
        if wrong:
            result.mismatches.extend(wrong)
        else:
            result.orders_matching += 1
    position = {e.event_id: i for i, e in enumerate(simulation.events)}
    last_seen: dict[str, int] = {}
    seen: set[str] = set()
    for request in sandbox_requests(sandbox_url):
        if request.get("method") != "POST" or request.get("status") != 201:
            continue
        body = request.get("body") or {}
        ids = sorted(event_ids_of(body), key=lambda i: position.get(i, -1))
        result.posts += 1
        result.events_posted += len(ids)
        order = str(body.get("orderId"))
        for event_id in ids:
            result.duplicate_events += event_id in seen
            seen.add(event_id)
            if position.get(event_id, -1) < last_seen.get(order, -1):
                result.order_violations += 1
            last_seen[order] = max(last_seen.get(order, -1), position.get(event_id, -1))
    return result


def sandbox_requests(sandbox_url: str, after: int = 0) -> Iterator[dict[str, Any]]:
    """Every request the sandbox logged after sequence number `after`, in arrival order."""
    while True:
        page = httpx2.get(
            f"{sandbox_url}/_admin/requests", params={"after": after}, timeout=60
        ).json()["requests"]
        if not page:
            return
        yield from page
        after = page[-1]["seq"]


@click.command("demo")
@click.option(
    "--bootstrap-servers",
    envvar="KAFKA_BOOTSTRAP_SERVERS",
    default="127.0.0.1:9092",
    show_default=True,
)
@click.option("--orders", type=int, default=2000, show_default=True)
@click.option(
    "--members", type=int, default=3, show_default=True, help="Consumer group members to run."
)
@click.option("--partitions", type=int, default=12, show_default=True)
@click.option(
    "--latency-ms", type=int, default=50, show_default=True, help="Sandbox latency per request."
)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option(
    "--group-protocol",
    envvar="KAFKA_GROUP_PROTOCOL",
    type=click.Choice(["consumer", "classic"], case_sensitive=False),
    default="consumer",
    show_default=True,
    help="The members' consumer group protocol: consumer (KIP-848) or classic.",
)
@click.option(
    "--workdir", type=click.Path(path_type=Path), default=Path(".run/demo"), show_default=True
)
def demo_command(
    *,
    bootstrap_servers: str,
    orders: int,
    members: int,
    partitions: int,
    latency_ms: int,
    seed: int,
    group_protocol: str,
    workdir: Path,
) -> None:
    """Everything local, end to end: simulate, publish, consume with a group, reconcile."""
    with infrastructure_errors_reported():  # DemoFailed too
        console = Console(stderr=True)
        workdir.mkdir(parents=True, exist_ok=True)
        run_id = uuid.uuid4().hex[:6]
        topic, group = f"demo.fulfillment-events.{run_id}", f"demo-consumer-{run_id}"
        create_topics(bootstrap_servers, topic, partitions)
        console.print(f"[bold]topic[/] {topic} ({partitions} partitions)  [bold]group[/] {group}")
        with sandbox_process(
            free_port(), latency_ms=latency_ms, log_path=workdir / "sandbox.log"
        ) as (url, _sandbox):
            simulation = simulate(orders, seed)
            with httpx2.Client(timeout=30) as client:
                seed_sandbox(url, simulation, client)
            console.print(
                f"sandbox at {url}: {orders} orders seeded (strict), {latency_ms} ms latency"
            )
            published = publish_events(bootstrap_servers, topic, simulation)
            console.print(f"published {published} events for {orders} orders")
            protocol = group_protocol.lower()
            env = member_env(
                bootstrap_servers, topic, group, url, {"KAFKA_GROUP_PROTOCOL": protocol}
            )
            procs = [start_member(env, workdir / f"member-{i}.log") for i in range(members)]
            console.print(f"started {members} consumer members (logs in {workdir})")
            console.print(_protocol_line(protocol))
            started = time.monotonic()
            _follow(
                console,
                url,
                published,
                procs,
                lambda: group_lag(bootstrap_servers, topic, group, partitions)[0],
            )
            elapsed = time.monotonic() - started
            codes = stop_members(procs)
            result = reconcile(url, simulation)
        _report(console, result, published, elapsed, codes)
        if result.mismatches or result.order_violations or result.duplicate_events or any(codes):
            sys.exit(1)


def _follow(
    console: Console,
    url: str,
    published: int,
    procs: list[subprocess.Popen[bytes]],
    committed: Callable[[], int],
) -> None:
    """A progress bar of the committed records until all `published` are or a member exited."""
    with Progress(
        TextColumn("[bold]committed"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[posts]}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("committed", total=published, posts="")
        while True:
            done = committed()
            stats = httpx2.get(f"{url}/_admin/stats", timeout=10).json()
            progress.update(task, completed=done, posts=f"POSTs at DR: {_count_posts(stats)}")
            if done >= published or any(p.poll() is not None for p in procs):
                return
            time.sleep(0.5)


def _protocol_line(protocol: str) -> str:
    """Which group protocol runs, and how to choose the other."""
    if protocol == "consumer":
        return (
            "[bold]group protocol[/] consumer (KIP-848: the broker rebalances member by member); "
            "the classic one: --group-protocol classic or KAFKA_GROUP_PROTOCOL=classic"
        )
    return (
        "[bold]group protocol[/] classic (cooperative-sticky, for brokers before Kafka 4.0); "
        "the default: --group-protocol consumer or KAFKA_GROUP_PROTOCOL=consumer"
    )


def _count_posts(stats: Mapping[str, Any]) -> int:
    return int(stats.get("byRoute", {}).get("POST /fulfillments", {}).get("201", 0))


def _report(
    console: Console, r: Reconciliation, published: int, elapsed: float, codes: list[int]
) -> None:
    table = Table(title="reconciliation: sandbox ledger vs published events")
    table.add_column("check")
    table.add_column("result", justify="right")
    table.add_row("events published", str(published))
    table.add_row("fulfillment POSTs applied", str(r.posts))
    table.add_row("events per POST", f"{r.events_posted / max(1, r.posts):.2f}")
    table.add_row("orders matching the ledger", f"{r.orders_matching}/{r.orders}")
    table.add_row("events applied twice", str(r.duplicate_events))
    table.add_row("per-order order violations", str(r.order_violations))
    table.add_row(
        "wall time (consume)", f"{elapsed:.1f}s ({published / max(elapsed, 1e-9):.0f} events/s)"
    )
    table.add_row("member exit codes", ", ".join(map(str, codes)))
    console.print(table)
    for line in r.mismatches[:10]:
        console.print(f"[red]mismatch[/] {line}")
    ok = not (r.mismatches or r.order_violations or r.duplicate_events or any(codes))
    console.print(
        "[bold green]OK[/]: Digital River holds exactly what the warehouse published"
        if ok
        else "[bold red]FAILED[/]"
    )
