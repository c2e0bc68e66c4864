"""Client CPU per POST: httpx's default transport (sharded) against PooledHTTP11Transport.

The sandbox runs as its own process (lenient orders, no latency, no rate limit) so the figures
are this process's CPU only. In one process and one run, `--requests` POST /fulfillments are
driven with `--concurrency` workers through:

- default: `httpx.AsyncClient`s with httpcore's pool, 4 connections each, used round-robin
  (what consumer/digitalriver.py does);
- pooled: one `httpx.AsyncClient(transport=PooledHTTP11Transport(max_connections=concurrency))`.

Each variant gets a short warm-up first. Prints requests/s and client CPU seconds (user + system,
`resource.getrusage`) per 1,000 requests.

    .venv/bin/python bench/transport_bench.py [--requests 20000] [--concurrency 128]
        [--parser auto|pure|httptools] [--uvloop] [--rounds 1]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import resource
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from consumer.demo import free_port, sandbox_process
from consumer.http11 import PooledHTTP11Transport

HEADERS = {"Authorization": "Bearer sk_test_bench", "Accept": "application/json"}
PER_SHARD = 4
Post = Callable[[str, dict[str, Any]], Awaitable[httpx.Response]]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def drive(post: Post, requests: int, concurrency: int, tag: str) -> tuple[float, float]:
    """(seconds, CPU seconds) to send `requests` POSTs; every answer must be a 201."""
    counter = itertools.count()

    async def worker() -> None:
        while (i := next(counter)) < requests:
            body = {"orderId": f"ord_{tag}_{i}", "items": [{"itemId": "itm_a", "quantity": 1}]}
            resp = await post("/fulfillments", body)
            if resp.status_code != 201:
                raise SystemExit(f"unexpected {resp.status_code}: {resp.text[:200]}")

    cpu, started = cpu_seconds(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, cpu_seconds() - cpu


async def default_transport(url: str, args: argparse.Namespace, tag: str) -> tuple[float, float]:
    limits = httpx.Limits(max_connections=PER_SHARD, max_keepalive_connections=PER_SHARD)
    shards = [
        httpx.AsyncClient(base_url=url, headers=HEADERS, limits=limits, timeout=15)
        for _ in range(-(-args.concurrency // PER_SHARD))
    ]
    rotation = itertools.cycle(shards)

    def post(path: str, body: dict[str, Any]) -> Awaitable[httpx.Response]:
        return next(rotation).post(path, json=body)

    try:
        await drive(post, args.warmup, args.concurrency, f"{tag}w")
        return await drive(post, args.requests, args.concurrency, tag)
    finally:
        for client in shards:
            await client.aclose()


async def pooled_transport(url: str, args: argparse.Namespace, tag: str) -> tuple[float, float]:
    transport = PooledHTTP11Transport(max_connections=args.concurrency, parser=args.parser)
    async with httpx.AsyncClient(
        transport=transport, base_url=url, headers=HEADERS, timeout=15
    ) as client:

        def post(path: str, body: dict[str, Any]) -> Awaitable[httpx.Response]:
            return client.post(path, json=body)

        await drive(post, args.warmup, args.concurrency, f"{tag}w")
        return await drive(post, args.requests, args.concurrency, tag)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=1_000)
    parser.add_argument("--parser", choices=("auto", "pure", "httptools"), default="auto")
    parser.add_argument("--uvloop", action="store_true", help="run the client on uvloop")
    parser.add_argument("--rounds", type=int, default=1, help="alternate the variants N times")
    args = parser.parse_args()
    variants = {"default (httpcore, 4/shard)": default_transport, "pooled": pooled_transport}
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    with sandbox_process(free_port(), latency_ms=0, strict=False) as url:
        for round_no in range(args.rounds):
            for n, (name, run) in enumerate(variants.items()):
                coro = run(url, args, f"r{round_no}v{n}")
                if args.uvloop:
                    import uvloop  # noqa: PLC0415 - optional, only with --uvloop

                    results[name].append(uvloop.run(coro))
                else:
                    results[name].append(asyncio.run(coro))
    loop = "uvloop" if args.uvloop else "asyncio"
    print(f"{args.requests} POST /fulfillments, concurrency {args.concurrency}, client on {loop}")
    for name, runs in results.items():
        for seconds, cpu in runs:
            print(
                f"  {name:28s} {args.requests / seconds:8.0f} req/s"
                f"  {cpu / args.requests * 1000:6.3f} CPU s per 1,000 requests"
            )


if __name__ == "__main__":
    main()
