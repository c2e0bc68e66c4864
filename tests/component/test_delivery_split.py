"""FulfillmentSender against the sandbox in-process: a refused coalesced batch is split."""

from __future__ import annotations

import asyncio
import random
import time

import httpx2

from consumer.config.settings import Secret
from consumer.core.budget import TokenBucket
from consumer.core.decisions import Applied, Park
from consumer.core.lanes import Batch, PendingEvent
from consumer.core.outcomes import RetryPolicy
from consumer.digitalriver.client import DigitalRiverClient
from consumer.digitalriver.delivery import FulfillmentSender
from consumer.ops.metrics import Metrics
from consumer.sandbox.app import create_app
from consumer.sandbox.config import SandboxConfig
from consumer.sandbox.testing import TEST_KEY, sandbox_client
from tests.event_builders import shipment


def send(items: list[tuple[str, int]], stock: int) -> tuple[object, dict[str, object], int]:
    """Post one coalesced batch of shipments (item, units) for an order with `stock` units of
    itm_1; the decision, the order's ledger line and the POSTs made."""

    async def scenario() -> tuple[object, dict[str, object], int]:
        app = create_app(SandboxConfig(strict_orders=True))
        async with sandbox_client(app) as admin:
            seeded = {"orders": [{"id": "ord_a", "items": [{"id": "itm_1", "quantity": stock}]}]}
            (await admin.post("/_admin/orders", json=seeded)).raise_for_status()
            client = DigitalRiverClient(
                "http://sandbox.test",
                Secret(TEST_KEY),
                transport=httpx2.ASGITransport(app=app),
            )
            sender = FulfillmentSender(
                client,
                TokenBucket(rate=1000, burst=1000),
                policy=RetryPolicy(),
                clock=time.monotonic,
                rng=random.Random(1),
                metrics=Metrics(),
            )
            entries = tuple(
                PendingEvent(i, shipment(f"evt-{i}", "ord_a", ((item, units),)))
                for i, (item, units) in enumerate(items)
            )
            decision = (await sender.send(Batch(0, "ord_a", entries), 0)).decision
            await client.aclose()
            ledger = (await admin.get("/_admin/ledger")).json()["orders"]["ord_a"]["lines"]
            stats = (await admin.get("/_admin/stats")).json()["byRoute"]["POST /fulfillments"]
            return decision, ledger["itm_1"], sum(stats.values())

    return asyncio.run(scenario())


def test_an_event_naming_an_unknown_line_parks_from_itself_and_the_ones_before_it_apply() -> None:
    decision, line, posts = send([("itm_1", 1), ("itm_1", 1), ("itm_nope", 1), ("itm_1", 1)], 5)
    assert isinstance(decision, Park)
    assert decision.status == 400
    assert [e.event.event_id for e in decision.posted] == ["evt-0", "evt-1"]
    assert line["captured"] == 2
    assert posts <= 1 + 2 * 2 + 1


def test_an_over_fulfilling_last_event_parks_alone() -> None:
    decision, line, _ = send([("itm_1", 1), ("itm_1", 1), ("itm_1", 1), ("itm_1", 3)], 4)
    assert isinstance(decision, Park)
    assert decision.code == "quantity_too_large"
    assert [e.event.event_id for e in decision.posted] == ["evt-0", "evt-1", "evt-2"]
    assert line["captured"] == 3


def test_a_batch_that_fits_is_one_post() -> None:
    decision, line, posts = send([("itm_1", 1), ("itm_1", 2)], 3)
    assert isinstance(decision, Applied)
    assert (line["captured"], posts) == (3, 1)
