"""POSTs/s and client CPU per POST of `DigitalRiverClient` (httpx2) against the sandbox.

The sandbox runs as its own process (lenient orders, `--latency-ms`, no rate limit), so the CPU
figures are this process's only: what one member spends in its HTTP client per POST. In one
process, `--requests` POST /fulfillments go out from `--concurrency` workers through one client
(as a member sends them: `DigitalRiverClient.create_fulfillment`), after a short warm-up.
Prints POSTs/s, client CPU milliseconds per POST (user + system, `resource.getrusage`) and the
POSTs/s one core could carry at that cost (1 / CPU per POST).

    .venv/bin/python bench/dr_client_bench.py [--requests 10000] [--concurrency 64]
        [--max-connections N] [--latency-ms 50] [--rounds 1]

BENCH_PROFILE=FILE runs the measured part under py-spy (raw stacks into FILE; `pip install py-spy`).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

from consumer.config.settings import Secret
from consumer.digitalriver.client import DigitalRiverClient
from consumer.tools.demo import free_port, sandbox_process

KEY = Secret("sk_test_bench")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def drive(
    client: DigitalRiverClient, requests: int, concurrency: int, tag: str
) -> tuple[float, float]:
    """(seconds, CPU seconds) to send `requests` POSTs; every answer must be a 201."""
    counter = itertools.count()

    async def worker() -> None:
        while (i := next(counter)) < requests:
            body = {"orderId": f"ord_{tag}_{i}", "items": [{"itemId": "itm_a", "quantity": 1}]}
            answer = await client.create_fulfillment(body)
            if answer.status != 201:
                raise SystemExit(f"unexpected {answer.status}: {answer.body}")

    cpu, started = cpu_seconds(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, cpu_seconds() - cpu


async def one_round(url: str, args: argparse.Namespace, tag: str) -> tuple[float, float]:
    client = DigitalRiverClient(url, KEY, max_connections=args.max_connections or args.concurrency)
    try:
        await drive(client, args.warmup, args.concurrency, f"{tag}w")
        profile = os.environ.get("BENCH_PROFILE")
        spy = None
        if profile:
            py_spy = str(Path(sys.executable).parent / "py-spy")
            spy = subprocess.Popen(
                [py_spy, "record", "-r", "200", "-f", "raw", "-o", profile, "-p", str(os.getpid())]
            )
            await asyncio.sleep(1)
        try:
            return await drive(client, args.requests, args.concurrency, tag)
        finally:
            if spy is not None:
                spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
                spy.wait()
    finally:
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument(
        "--max-connections", type=int, default=0, help="the pool's cap [default: concurrency]"
    )
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    with sandbox_process(free_port(), latency_ms=args.latency_ms, strict=False) as (url, _):
        runs = [asyncio.run(one_round(url, args, f"r{n}")) for n in range(args.rounds)]
    print(
        f"{args.requests} POST /fulfillments, concurrency {args.concurrency}, "
        f"pool of {args.max_connections or args.concurrency}, "
        f"sandbox latency {args.latency_ms} ms, no rate limit"
    )
    for seconds, cpu in runs:
        per_post = cpu / args.requests
        print(
            f"  {args.requests / seconds:7.0f} POSTs/s  {1000 * per_post:6.3f} CPU ms per POST"
            f"  (one core: {1 / per_post:5.0f} POSTs/s)"
        )


if __name__ == "__main__":
    main()
