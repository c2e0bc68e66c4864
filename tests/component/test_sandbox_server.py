"""The sandbox on a real loopback socket (SandboxServer: uvicorn in a background thread)."""

from __future__ import annotations

import asyncio
import time

import httpx2
import pytest

from consumer.sandbox import FaultSettings, SandboxConfig
from consumer.sandbox.server import SandboxServer

KEY = {"Authorization": "Bearer sk_test_server"}


def test_a_client_that_times_out_leaves_nothing_applied_and_the_server_stops_cleanly() -> None:
    config = SandboxConfig(faults=FaultSettings(timeout_rate=1.0, timeout_hold_s=30))
    started = time.monotonic()
    with SandboxServer(config) as sandbox:
        assert sandbox.url.startswith("http://127.0.0.1:")
        with httpx2.Client(base_url=sandbox.url, headers=KEY) as client:
            with pytest.raises(httpx2.ReadTimeout):
                client.post(
                    "/fulfillments",
                    json={"orderId": "ord_1", "items": [{"itemId": "itm_a", "quantity": 1}]},
                    timeout=0.3,
                )
            stats = client.get("/_admin/stats").json()
            ledger = client.get("/_admin/ledger").json()
    assert stats["inFlight"] == 1, "the request is still held"
    assert stats["faultsInjected"]["timeout"] == 0, "counted once answered"
    assert ledger == {"orders": {}}
    assert time.monotonic() - started < 10, "stopping cancels held requests"


@pytest.mark.anyio
async def test_concurrent_posts_over_http_are_served_in_parallel_and_all_applied() -> None:
    config = SandboxConfig(faults=FaultSettings(latency_ms=100))
    with SandboxServer(config) as sandbox:
        limits = httpx2.Limits(max_connections=100)
        async with httpx2.AsyncClient(base_url=sandbox.url, headers=KEY, limits=limits) as client:
            started = time.monotonic()
            answers = await asyncio.gather(
                *(
                    client.post(
                        "/fulfillments",
                        json={"orderId": f"ord_{i}", "items": [{"itemId": "itm_a", "quantity": 1}]},
                    )
                    for i in range(100)
                )
            )
            elapsed = time.monotonic() - started
            stats = (await client.get("/_admin/stats")).json()
    assert {a.status_code for a in answers} == {201}
    assert all(a.headers["x-dr-requestid"] for a in answers)
    assert stats["fulfillments"] == 100
    assert elapsed < 3.0, f"100 x 100 ms took {elapsed:.2f} s: requests were not concurrent"
