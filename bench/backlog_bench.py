"""One member against a big backlog: does an event cost the same at a million as at ten thousand?
(issue #13)

Publishes `--events` simulated events (default 1,000,000, about 2.65 per order) on
`--partitions` partitions before the member starts, with the simulator and an idempotent producer
(no CLI round trip per event), seeds a strict sandbox (its own process, `--latency-ms` per
request, no rate limit), then runs ONE `fulfillment-consumer run` with the default settings until
every offset is committed. While it runs it prints, every `--sample-seconds`:

    t, events committed, events/s since the last sample, member RSS / CPU%, sandbox RSS / CPU%

and after each `--window` committed events (default 100,000) the events/s of that window. At the
end: first vs last window, the member's RSS at 1 and 2 minutes and at the end (a slope shows a
leak), the sandbox's, and whether the sandbox's ledger holds exactly what was published.

`--check` exits 1 unless issue #13's bar is met: last window within 15% of the first, member RSS
no more than +10 MiB from minute 2 to the end and at most 200 MiB.

Profiling (for finding what grows; both slow the member down, so not for the figures):
- `--tracemalloc DIR`: the member runs under tracemalloc and writes DIR/snap-<seconds>.pickle
  every `--snapshot-seconds`; `--diff DIR` prints the top growth between the first and last.
- `--py-spy DIR`: 20 s of `py-spy record` (raw stacks) of the member and of the sandbox at the
  second window and again two windows before the end (`pip install py-spy`).

    make bench-backlog                         # 1,000,000 events (10+ minutes on 2 cores)
    .venv/bin/python bench/backlog_bench.py --events 200000 [--check]
    (starts its own broker unless --bootstrap-servers is given; MEMBER_ENV=K=V,K=V adds settings)
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
from confluent_kafka import Consumer, TopicPartition
from harness import cpu_seconds, rss_mib, start_broker

from consumer.tools.demo import (
    create_topics,
    free_port,
    member_env,
    publish_events,
    sandbox_process,
)
from consumer.tools.warehouse.simulator import Simulation, expected_ledger, seed_sandbox, simulate

ORDERS_PER_CHUNK = 20_000
MIB = 1024 * 1024


@dataclass
class Proc:
    """RSS and CPU of one process, read from /proc."""

    pid: int
    last_cpu: float = 0.0

    def rss_mib(self) -> float:
        return rss_mib(self.pid)

    def cpu_seconds(self) -> float:
        found = cpu_seconds(self.pid)
        return self.last_cpu if found is None else found


@dataclass
class Sample:
    t: float
    committed: int
    member_rss: float
    member_cpu: float
    sandbox_rss: float
    sandbox_cpu: float


@dataclass
class Run:
    events: int
    window: int
    samples: list[Sample] = field(default_factory=list)
    windows: list[tuple[int, float]] = field(default_factory=list)  # (end, events/s)
    cpu_per_k: list[tuple[float, float]] = field(default_factory=list)  # member, sandbox

    def rss_at(self, seconds: float) -> float | None:
        for s in self.samples:
            if s.t >= seconds:
                return s.member_rss
        return None


# -- the backlog ---------------------------------------------------------------------------------
def chunks(events: int, seed: int) -> Iterator[Simulation]:
    """Simulations of ORDERS_PER_CHUNK orders (each its own seed) until `events` events; the last
    one cut at exactly `events` (a cut order just ends early)."""
    left, index = events, 0
    while left > 0:
        sim = simulate(ORDERS_PER_CHUNK, seed * 1_000_003 + index)
        if len(sim.events) > left:
            kept = sim.events[:left]
            used = {e.order_id for e in kept}
            sim = Simulation(sim.seed, tuple(o for o in sim.orders if o.id in used), kept)
        left -= len(sim.events)
        index += 1
        yield sim


def build_backlog(
    bootstrap: str, topic: str, urls: list[str], events: int, seed: int
) -> tuple[int, int, dict[str, dict[str, tuple[int, int]]]]:
    """Publish and seed chunk by chunk; (events, orders, expected ledger)."""
    published = orders = 0
    expected: dict[str, dict[str, tuple[int, int]]] = {}
    started = time.monotonic()
    with httpx2.Client(timeout=120) as client:
        for sim in chunks(events, seed):
            for url in urls:
                seed_sandbox(url, sim, client, chunk_size=1000)
            published += publish_events(bootstrap, topic, sim)
            orders += len(sim.orders)
            expected.update(expected_ledger(sim))
            rate = published / max(1e-9, time.monotonic() - started)
            print(f"  published {published:>9,} events ({rate:,.0f}/s)", flush=True)
    return published, orders, expected


def report_ledger(url: str, expected: dict[str, dict[str, tuple[int, int]]]) -> bool:
    wrong = verify(url, expected)
    orders_wrong = len({w.split("/")[0] for w in wrong})
    print(f"ledger: {len(expected) - orders_wrong:,}/{len(expected):,} orders exactly as published")
    for line in wrong[:10]:
        print("  mismatch", line)
    return not wrong


def verify(url: str, expected: dict[str, dict[str, tuple[int, int]]]) -> list[str]:
    """Orders whose lines at the sandbox differ from what the published events say."""
    ledger = httpx2.get(f"{url}/_admin/ledger", timeout=600).json()["orders"]
    wrong = []
    for order_id, lines in expected.items():
        actual = ledger.get(order_id, {}).get("lines", {})
        for item, (captured, cancelled) in lines.items():
            got = actual.get(item, {})
            if (got.get("captured", 0), got.get("cancelled", 0)) != (captured, cancelled):
                wrong.append(f"{order_id}/{item}: expected {(captured, cancelled)}, got {got}")
    return wrong


# -- processes -----------------------------------------------------------------------------------
class Progress:
    """Committed offsets of the group, summed (one long-lived admin consumer)."""

    def __init__(self, bootstrap: str, topic: str, group: str, partitions: int) -> None:
        self._consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
        )
        self._tps = [TopicPartition(topic, p) for p in range(partitions)]

    def committed(self) -> int:
        try:
            found = self._consumer.committed(self._tps, timeout=10)
        except Exception:
            return -1
        return sum(max(0, tp.offset) for tp in found)

    def close(self) -> None:
        self._consumer.close()


def py_spy(pid: int, out: Path) -> subprocess.Popen[bytes] | None:
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        print("  (py-spy not installed: pip install py-spy)")
        return None
    cmd = [exe, "record", "--pid", str(pid), "-d", "20", "-r", "50", "-f", "raw", "-o", str(out)]
    return subprocess.Popen(
        [*cmd, "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


# -- the run -------------------------------------------------------------------------------------
@dataclass
class Arm:
    """One member and its own sandbox and group, running code from `code` (None: this checkout)."""

    label: str
    code: Path | None
    url: str
    sandbox_pid: int
    run: Run
    member: subprocess.Popen[bytes] | None = None
    progress: Progress | None = None
    procs: dict[str, Proc] = field(default_factory=dict)
    windows: Windows | None = None
    last: tuple[float, int, float, float] = (0.0, 0, 0.0, 0.0)

    def start(self, args: argparse.Namespace, bootstrap: str, topic: str, logs: Path) -> None:
        group = f"bench-backlog-{self.label}-{uuid.uuid4().hex[:6]}"
        extra = dict(kv.split("=", 1) for kv in os.environ.get("MEMBER_ENV", "").split(",") if kv)
        if self.code is not None:
            extra["PYTHONPATH"] = str(self.code)
        env = member_env(bootstrap, topic, group, self.url, extra)
        traced = args.tracemalloc or args.census
        command = member_command(args, f"{traced}/{self.label}" if traced else None)
        with (logs / f"member-{self.label}.log").open("wb") as log:
            self.member = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.code
            )
        self.procs = {"member": Proc(self.member.pid), "sandbox": Proc(self.sandbox_pid)}
        self.progress = Progress(bootstrap, topic, group, args.partitions)
        self.last = (
            0.0,
            0,
            self.procs["member"].cpu_seconds(),
            self.procs["sandbox"].cpu_seconds(),
        )
        self.windows = Windows(self.run, args.window, (self.last[2], self.last[3]), self.label)

    def finished(self) -> bool:
        return bool(self.run.samples) and self.run.samples[-1].committed >= self.run.events

    def sample(self, t: float) -> list[int]:
        """Record one sample; the windows it closed."""
        assert self.member is not None
        assert self.progress is not None
        assert self.windows is not None
        if self.member.poll() is not None:
            raise SystemExit(f"the {self.label} member exited ({self.member.returncode})")
        done = self.progress.committed()
        if done < 0:
            return []
        cpu = (self.procs["member"].cpu_seconds(), self.procs["sandbox"].cpu_seconds())
        dt = t - self.last[0]
        sample = Sample(
            t,
            done,
            self.procs["member"].rss_mib(),
            100 * (cpu[0] - self.last[2]) / dt,
            self.procs["sandbox"].rss_mib(),
            100 * (cpu[1] - self.last[3]) / dt,
        )
        self.run.samples.append(sample)
        rate_now = (done - self.last[1]) / dt
        print(
            f"{self.label:>6} {t:6.0f} {done:10,} {rate_now:6.0f} {sample.member_rss:10.1f} "
            f"{sample.member_cpu:5.0f} {sample.sandbox_rss:11.1f} {sample.sandbox_cpu:5.0f}",
            flush=True,
        )
        self.last = (t, done, *cpu)
        return self.windows.close(t, done, rate_now, cpu)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.close()
        if self.member is not None and self.member.poll() is None:
            self.member.terminate()
            try:
                self.member.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.member.kill()


def member_command(args: argparse.Namespace, traced: str | None) -> list[str]:
    if not traced:
        return [sys.executable, "-m", "consumer", "run"]
    Path(traced).mkdir(parents=True, exist_ok=True)
    return [
        sys.executable,
        str(Path(__file__).resolve()),
        "--traced-member",
        traced,
        "--snapshot-seconds",
        str(args.snapshot_seconds),
        *(["--census", traced] if args.census else []),
    ]


class Windows:
    """Events/s and CPU per 1,000 events of each `size`-event window of committed offsets."""

    def __init__(self, run: Run, size: int, cpu: tuple[float, float], label: str) -> None:
        self._run, self._size, self._label = run, size, label
        self._start = (0.0, 0)  # (seconds, committed) where the open window began
        self._cpu = cpu  # (member, sandbox) CPU seconds then

    def close(self, t: float, done: int, rate_now: float, cpu: tuple[float, float]) -> list[int]:
        """Close every window `done` completed (the last one at the end of the backlog); the
        window ends closed."""
        closed = []
        began, first = self._start
        while done >= first + self._size or (done >= self._run.events and done > first):
            end = min(done, first + self._size)
            # interpolated: the sample interval is short against a window
            crossed = t - (done - end) / max(1e-9, rate_now) if done > end else t
            rate = (end - first) / max(1e-9, crossed - began)
            per_k = [
                1000 * (now - then) / max(1, done - first)
                for now, then in zip(cpu, self._cpu, strict=True)
            ]
            self._run.windows.append((end, rate))
            self._run.cpu_per_k.append((per_k[0], per_k[1]))
            print(
                f"--- {self._label} window {first:,}-{end:,}: {rate:,.0f} events/s; CPU s per "
                f"1,000 events: member {per_k[0]:.2f}, sandbox {per_k[1]:.2f}",
                flush=True,
            )
            began, first, self._cpu = crossed, end, cpu
            closed.append(end)
        self._start = (began, first)
        return closed


def run_arms(
    args: argparse.Namespace, arms: list[Arm], bootstrap: str, topic: str, logs: Path
) -> None:
    """Start every arm's member at once and sample them until each committed the backlog."""
    published = arms[0].run.events
    spy_at = {args.window, max(args.window, published - 2 * args.window)}
    print(
        f"{'member':>6} {'t s':>6} {'committed':>10} {'ev/s':>6} {'member MiB':>10} {'CPU%':>5} "
        f"{'sandbox MiB':>11} {'CPU%':>5}",
        flush=True,
    )
    started = time.monotonic()
    try:
        for arm in arms:
            arm.start(args, bootstrap, topic, logs)
        while not all(arm.finished() for arm in arms):
            time.sleep(args.sample_seconds)
            for arm in arms:
                if arm.finished():
                    continue
                for end in arm.sample(time.monotonic() - started):
                    if args.py_spy and end in spy_at:
                        for name, proc in arm.procs.items():
                            py_spy(proc.pid, Path(args.py_spy) / f"{arm.label}-{name}-{end}.txt")
                if arm.finished():
                    print(
                        f"--- {arm.label} done after {time.monotonic() - started:.0f} s", flush=True
                    )
                    arm.stop()
    finally:
        for arm in arms:
            arm.stop()


def summarize(label: str, run: Run) -> bool:
    """Print the verdict; True when issue #13's bar is met."""
    seconds = run.samples[-1].t
    first, last = run.windows[0][1], run.windows[-1][1]
    if len(run.windows) > 1 and run.windows[-1][0] - run.windows[-2][0] < run.window // 2:
        last = run.windows[-2][1]  # a short tail window says little; use the last full one
    peak = max(s.member_rss for s in run.samples)
    at1, at2 = run.rss_at(60), run.rss_at(120)
    end = run.samples[-1].member_rss
    print(
        f"\n{label}: {run.events:,} events in {seconds:.0f} s: {run.events / seconds:,.0f} events/s"
    )
    print(f"events/s first window {first:,.0f}, last window {last:,.0f} ({last / first - 1:+.0%})")
    (m_first, s_first), (m_last, s_last) = run.cpu_per_k[0], run.cpu_per_k[-1]
    print(
        f"CPU s per 1,000 events, first -> last window: member {m_first:.2f} -> {m_last:.2f}, "
        f"sandbox {s_first:.2f} -> {s_last:.2f}"
    )
    print(
        f"member RSS: 1 min {at1 or 0:.1f} MiB, 2 min {at2 or 0:.1f} MiB, end {end:.1f} MiB, "
        f"peak {peak:.1f} MiB; from minute 2 to the end {end - (at2 or end):+.1f} MiB"
    )
    sandbox_end = run.samples[-1].sandbox_rss
    print(
        f"sandbox RSS end {sandbox_end:.1f} MiB; mean CPU member "
        f"{sum(s.member_cpu for s in run.samples) / len(run.samples):.0f}%, sandbox "
        f"{sum(s.sandbox_cpu for s in run.samples) / len(run.samples):.0f}%"
    )
    ok = last >= 0.85 * first and peak <= 200 and (at2 is None or end - at2 <= 10)
    print("issue #13 bar:", "MET" if ok else "NOT MET")
    return ok


# -- profiling helpers ---------------------------------------------------------------------------
def traced_member(directory: str, every: float, census: bool) -> None:
    """The member, writing every `every` seconds either a tracemalloc snapshot (slow: every
    allocation is traced) or a census (cheap: live objects per type from `gc.get_objects()`,
    glibc's malloc in use and free, RSS) as one JSON line of DIR/census.jsonl."""
    if not census:
        tracemalloc.start(8)
    started = time.monotonic()

    def dump() -> None:
        while True:
            time.sleep(every)
            seconds = int(time.monotonic() - started)
            if census:
                with open(Path(directory) / "census.jsonl", "a") as f:
                    f.write(json.dumps({"t": seconds, **take_census()}) + "\n")
                continue
            snap = tracemalloc.take_snapshot()
            with open(Path(directory) / f"snap-{seconds:05d}.pickle", "wb") as f:
                pickle.dump(snap, f)

    threading.Thread(target=dump, daemon=True).start()
    from consumer.cli import main as cli_main  # noqa: PLC0415 - after tracemalloc started

    sys.argv = ["fulfillment-consumer", "run"]
    cli_main()


def take_census() -> dict[str, object]:
    types = Counter(type(o).__name__ for o in gc.get_objects())
    info: dict[str, object] = {"rss_mib": rss_mib(os.getpid())}
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        m = libc.mallinfo2()
        info |= {
            "malloc_used_mib": (m.uordblks + m.hblkhd) / MIB,
            "malloc_free_mib": m.fordblks / MIB,
        }
    except (OSError, AttributeError):
        pass
    info["blocks"] = sys.getallocatedblocks()
    info["types"] = dict(types.most_common(40))
    return info


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def diff(directory: str) -> None:
    census = Path(directory) / "census.jsonl"
    if census.exists():
        lines = [json.loads(line) for line in census.read_text().splitlines()]
        first, last = lines[min(1, len(lines) - 1)], lines[-1]
        for row in lines:
            print(
                {
                    k: (round(v, 1) if isinstance(v, float) else v)
                    for k, v in row.items()
                    if k != "types"
                }
            )
        print(f"objects per type, t={first['t']} -> t={last['t']} (largest changes):")
        names = set(first["types"]) | set(last["types"])
        change = sorted(
            names, key=lambda n: -abs(last["types"].get(n, 0) - first["types"].get(n, 0))
        )
        for name in change[:20]:
            a, b = first["types"].get(name, 0), last["types"].get(name, 0)
            print(f"  {name:30} {a:>9,} -> {b:>9,} ({b - a:+,})")
        return
    snaps = sorted(Path(directory).glob("snap-*.pickle"))
    if len(snaps) < 2:
        raise SystemExit(f"need two snapshots in {directory}")
    filters = [tracemalloc.Filter(False, tracemalloc.__file__)]
    with snaps[1].open("rb") as f:  # the first is taken while the buffers still fill
        early = pickle.load(f).filter_traces(filters)  # noqa: S301 - our own files
    with snaps[-1].open("rb") as f:
        late = pickle.load(f).filter_traces(filters)  # noqa: S301
    print(f"{snaps[1].name} -> {snaps[-1].name}")
    print(
        f"total {sum(s.size for s in early.statistics('filename')) / MIB:.1f} MiB -> "
        f"{sum(s.size for s in late.statistics('filename')) / MIB:.1f} MiB"
    )
    for stat in late.compare_to(early, "traceback")[:15]:
        print(f"{stat.size_diff / 1024:+10.0f} KiB {stat.count_diff:+8d} blocks")
        for line in stat.traceback.format()[-6:]:
            print("    " + line)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--window", type=int, default=100_000)
    parser.add_argument("--sample-seconds", type=float, default=5.0)
    parser.add_argument("--check", action="store_true", help="exit 1 unless issue #13's bar is met")
    parser.add_argument("--no-verify", action="store_true", help="skip the ledger comparison")
    parser.add_argument("--bootstrap-servers")
    parser.add_argument("--tracemalloc", metavar="DIR")
    parser.add_argument("--snapshot-seconds", type=float, default=60.0)
    parser.add_argument("--census", metavar="DIR", help="cheap object census of the member")
    parser.add_argument(
        "--compare",
        metavar="DIR",
        help="also run, at the same time on the same backlog, a member from the code in DIR",
    )
    parser.add_argument("--py-spy", metavar="DIR")
    parser.add_argument("--diff", metavar="DIR", help="compare snapshots or censuses and exit")
    parser.add_argument("--traced-member", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.traced_member:
        traced_member(args.traced_member, args.snapshot_seconds, census=bool(args.census))
        return
    if args.diff:
        diff(args.diff)
        return
    if args.py_spy:
        Path(args.py_spy).mkdir(parents=True, exist_ok=True)
    # SIGTERM/SIGHUP unwind like Ctrl-C, so the member, the sandbox and the broker are stopped
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.default_int_handler)

    logs = Path(tempfile.mkdtemp(prefix="bench-backlog-"))
    broker = None
    bootstrap = args.bootstrap_servers
    if bootstrap is None:
        broker, bootstrap = start_broker(logs / "kafka")
    codes: list[tuple[str, Path | None]] = [("after", None)]
    if args.compare:
        codes.insert(0, ("before", Path(args.compare).resolve()))
    ok = True
    try:
        topic = f"backlog.{uuid.uuid4().hex[:6]}"
        create_topics(bootstrap, topic, args.partitions)
        with ExitStack() as stack:
            sandboxes = [
                stack.enter_context(
                    sandbox_process(
                        free_port(),
                        latency_ms=args.latency_ms,
                        log_path=logs / f"sandbox-{label}.log",
                        ready_within=60,
                    )
                )
                for label, _ in codes
            ]
            print(f"building the backlog: {args.events:,} events on {args.partitions} partitions")
            published, orders, expected = build_backlog(
                bootstrap, topic, [url for url, _ in sandboxes], args.events, args.seed
            )
            print(
                f"backlog: {published:,} events of {orders:,} orders; sandbox latency "
                f"{args.latency_ms} ms, no rate limit; default settings; logs in {logs}"
            )
            arms = [
                Arm(label, code, url, proc.pid, Run(published, args.window))
                for (label, code), (url, proc) in zip(codes, sandboxes, strict=True)
            ]
            run_arms(args, arms, bootstrap, topic, logs)
            for arm in arms:
                met = summarize(arm.label, arm.run)
                ok = ok and (met or arm.code is not None)
                if not args.no_verify:
                    ok = report_ledger(arm.url, expected) and ok
    finally:
        if broker is not None:
            broker.stop()
    if args.check and not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
