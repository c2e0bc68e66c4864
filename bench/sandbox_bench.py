"""How fast is the sandbox? It must never be what limits a consumer benchmark.

Starts `python -m consumer sandbox` as a subprocess (uvicorn, one worker, httptools + uvloop),
drives it over loopback with an httpx2.AsyncClient load generator (N concurrent workers, fixed
duration, each request a valid POST /fulfillments on a lenient order), and prints requests/s,
p50/p99 latency and the sandbox process's CPU use, at each configured latency fault.

    .venv/bin/python bench/sandbox_bench.py [--duration 10] [--concurrency 200] [--latency 0 50]

A sandbox CPU share well below 100% means the load generator, not the sandbox, was the limit.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import httpx2
import uvloop
from harness import cpu_seconds

from consumer.tools.demo import free_port, sandbox_process

KEY = "sk_test_bench"


@dataclass(frozen=True, slots=True)
class Result:
    latency_ms: float
    concurrency: int
    duration_s: float
    latencies_s: tuple[float, ...]
    failures: int
    server_cpu_s: float | None
    server_fulfillments: int

    def line(self) -> str:
        done = len(self.latencies_s)
        ordered = sorted(self.latencies_s)
        p50 = statistics.median(ordered) * 1000 if ordered else float("nan")
        p99 = ordered[int(0.99 * (done - 1))] * 1000 if ordered else float("nan")
        cpu = (
            f"{100 * self.server_cpu_s / self.duration_s:5.1f}%"
            if self.server_cpu_s is not None
            else "  n/a"
        )
        return (
            f"latency {self.latency_ms:5.0f} ms | concurrency {self.concurrency:4d} | "
            f"{done / self.duration_s:8.0f} req/s | p50 {p50:7.1f} ms | p99 {p99:7.1f} ms | "
            f"non-201 {self.failures} | sandbox CPU {cpu}{self.capacity()} | "
            f"applied {self.server_fulfillments}"
        )

    def capacity(self) -> str:
        """Requests/s the sandbox could serve at 100% of one CPU, extrapolated linearly."""
        if not self.server_cpu_s or not self.latencies_s:
            return ""
        return f" (~{len(self.latencies_s) / self.server_cpu_s:.0f} req/s per sandbox CPU-second)"


async def drive(
    url: str, workers: range, measure_from: float, stop_at: float, per_client: int
) -> tuple[list[float], int]:
    """Workers `workers`, each POSTing back to back until wall-clock `stop_at`; latencies of the
    requests started from `measure_from` on, and how many of those were not 201.

    Workers share clients of `per_client` connections each: httpcore 1.0's pool does
    O(connections x queued requests) work per request (encode/httpcore#1035), so one client with
    hundreds of connections would measure the pool, not the server.
    """
    shards = -(-len(workers) // per_client)
    limits = httpx2.Limits(max_connections=per_client, max_keepalive_connections=per_client)
    headers = {"Authorization": f"Bearer {KEY}"}
    clients = [
        httpx2.AsyncClient(base_url=url, limits=limits, headers=headers, timeout=30)
        for _ in range(shards)
    ]
    latencies: list[float] = []
    failures = 0

    async def worker(number: int) -> None:
        nonlocal failures
        client = clients[number % shards]
        sent = 0
        while (now := time.time()) < stop_at:
            body = {
                "orderId": f"ord_{number}_{sent}",
                "items": [{"itemId": "itm_1", "quantity": 1}],
                "metadata": {"fc_events_0": f"evt-{number}-{sent}", "fc_source": "0:1-1"},
            }
            sent += 1
            started = time.perf_counter()
            response = await client.post("/fulfillments", json=body)
            if now >= measure_from:
                latencies.append(time.perf_counter() - started)
                failures += response.status_code != 201

    try:
        await asyncio.gather(*(worker(n) for n in workers))
    finally:
        for client in clients:
            await client.aclose()
    return latencies, failures


def generate(
    url: str, workers: range, measure_from: float, stop_at: float, per_client: int
) -> tuple[list[float], int]:
    """One load-generator process (uvloop): see `drive`."""
    return uvloop.run(drive(url, workers, measure_from, stop_at, per_client))


def run(
    latency_ms: float,
    *,
    concurrency: int,
    duration_s: float,
    warmup_s: float,
    per_client: int,
    processes: int,
) -> Result:
    """One sandbox subprocess, `processes` generator processes sharing `concurrency` workers."""
    spawn = multiprocessing.get_context("spawn")
    with sandbox_process(free_port(), latency_ms=latency_ms, strict=False, ready_within=15) as (
        url,
        sandbox,
    ):
        with ProcessPoolExecutor(processes, mp_context=spawn) as pool:
            list(pool.map(time.sleep, [0] * processes))  # start the generators before the clock
            measure_from = time.time() + warmup_s
            stop_at = measure_from + duration_s
            shares = [range(p, concurrency, processes) for p in range(processes)]
            futures = [
                pool.submit(generate, url, share, measure_from, stop_at, per_client)
                for share in shares
            ]
            time.sleep(max(0.0, measure_from - time.time()))
            cpu_before = cpu_seconds(sandbox.pid)
            time.sleep(max(0.0, stop_at - time.time()))
            cpu_after = cpu_seconds(sandbox.pid)
            outcomes = [future.result() for future in futures]
        stats = httpx2.get(f"{url}/_admin/stats", timeout=5).json()
    latencies = tuple(latency for found, _ in outcomes for latency in found)
    cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    failures = sum(failed for _, failed in outcomes)
    return Result(
        latency_ms, concurrency, duration_s, latencies, failures, cpu, stats["fulfillments"]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds first")
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--latency", type=float, nargs="+", default=[0.0, 50.0])
    parser.add_argument("--per-client", type=int, default=16, help="connections per httpx2 client")
    parser.add_argument("--processes", type=int, default=1, help="load-generator processes")
    args = parser.parse_args()
    print(f"sandbox benchmark: {os.cpu_count()} CPUs, python {sys.version.split()[0]}")
    for latency_ms in args.latency:
        result = run(
            latency_ms,
            concurrency=args.concurrency,
            duration_s=args.duration,
            warmup_s=args.warmup,
            per_client=args.per_client,
            processes=args.processes,
        )
        print(result.line(), flush=True)


if __name__ == "__main__":
    main()
